/// Hands out the fixed-size blocks of one rank's paged KV cache, and with prefix caching keeps
/// the blocks that finished sequences leave behind, so that a later sequence with the same
/// leading tokens starts after them (vLLM's automatic prefix caching).
///
/// A full block is found by a hash chained over its tokens and the hash of the block before it.
/// A hit is then verified exactly: the block holds the same tokens, and it was registered as the
/// child of the very registration the previous hit matched (registrations are numbered and never
/// reused), so a hash collision, or a parent evicted and replaced, costs a miss, never a wrong
/// cache. Blocks are shared by reference count. A block nobody holds is free: one that holds a
/// cached prefix goes to the back of the free list, to be taken (and forgotten) last, least
/// recently freed first; one that holds nothing reusable goes to the front. The last blocks of a
/// sequence are freed first, so a prefix is evicted from its end and its beginning, which more
/// sequences share, stays longest.
///
/// Owned by the rank's step loop (through its `Scheduler`); not thread-safe. Blocks are plain
/// indices into every layer's cache tensors; a block is written only while one sequence holds it
/// and it is not yet full, so a shared block is never written.
public struct BlockAllocator: Sendable {
    public let blockCount: Int
    public let blockSize: Int
    /// Whether full blocks are kept for reuse (`--enable-prefix-caching`).
    public let cachesPrefixes: Bool

    /// Holders of each block; 0 means free.
    private var references: [Int32]
    /// The free list, a doubly linked list through `previous`/`next` (-1 ends it), so that a
    /// cached block taken by a hit leaves it in O(1).
    private var previous: [Int32]
    private var next: [Int32]
    private var head: Int32 = -1
    private var tail: Int32 = -1
    public private(set) var freeCount = 0

    /// The prefix hash a block is registered under, its registration's number (0: none), the
    /// number of its parent's registration (0 for a first block), and the tokens it holds.
    private var blockHash: [UInt64?]
    private var registration: [UInt64]
    private var parentRegistration: [UInt64]
    private var blockTokens: [Int32]
    private var registrations: UInt64 = 0
    /// The block of each cached prefix hash.
    private var cached: [UInt64: Int32] = [:]

    public init(blockCount: Int, blockSize: Int, cachesPrefixes: Bool = false) {
        precondition(blockCount > 0 && blockSize > 0, "a KV cache needs at least one block of at least one token")
        self.blockCount = blockCount
        self.blockSize = blockSize
        self.cachesPrefixes = cachesPrefixes
        references = [Int32](repeating: 0, count: blockCount)
        previous = [Int32](repeating: -1, count: blockCount)
        next = [Int32](repeating: -1, count: blockCount)
        blockHash = [UInt64?](repeating: nil, count: blockCount)
        registration = [UInt64](repeating: 0, count: blockCount)
        parentRegistration = [UInt64](repeating: 0, count: blockCount)
        blockTokens = cachesPrefixes ? [Int32](repeating: 0, count: blockCount * blockSize) : []
        for block in 0..<Int32(blockCount) { pushBack(block) }
    }

    public var usedCount: Int { blockCount - freeCount }
    /// The fraction of blocks in use, 0…1.
    public var usage: Double { Double(usedCount) / Double(blockCount) }
    /// Blocks that hold a cached prefix, held or free.
    public var cachedCount: Int { cached.count }

    /// Blocks needed to hold `tokens` positions.
    public func blocksNeeded(forTokens tokens: Int) -> Int { (tokens + blockSize - 1) / blockSize }

    /// Grows `blocks` until it covers `tokens` positions; false (and `blocks` unchanged) when too few are free.
    public mutating func grow(_ blocks: inout [Int32], toCover tokens: Int) -> Bool {
        let missing = blocksNeeded(forTokens: tokens) - blocks.count
        guard missing > 0 else { return true }
        guard missing <= freeCount else { return false }
        for _ in 0..<missing { blocks.append(take()) }
        return true
    }

    /// Lets go of `blocks` (last first) and empties it.
    public mutating func release(_ blocks: inout [Int32]) {
        for block in blocks.reversed() {
            references[Int(block)] -= 1
            precondition(references[Int(block)] >= 0, "block \(block) released more often than taken")
            guard references[Int(block)] == 0 else { continue }
            if blockHash[Int(block)] != nil { pushBack(block) } else { pushFront(block) }
        }
        blocks.removeAll(keepingCapacity: true)
    }

    // MARK: Prefixes

    /// The hash of a full block of `tokens` after a prefix whose last block hashed to `parent`
    /// (0 for the first block): FNV-1a over the parent and the tokens, then a 64-bit finaliser.
    public static func hash(parent: UInt64, tokens: ArraySlice<Int32>) -> UInt64 {
        var value: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ word: UInt64) {
            value = (value ^ word) &* 0x0000_0100_0000_01b3
        }
        mix(parent)
        for token in tokens { mix(UInt64(UInt32(bitPattern: token))) }
        value ^= value >> 33
        value = value &* 0xff51_afd7_ed55_8ccd
        value ^= value >> 33
        value = value &* 0xc4ce_b9fe_1a85_ec53
        value ^= value >> 33
        return value
    }

    /// Takes the cached blocks that hold the longest prefix of `tokens` made of whole blocks and
    /// at most `limit` tokens long, appending them to `blocks` and their hashes to `hashes`
    /// (both empty on entry). Returns the tokens they hold.
    public mutating func takePrefix(of tokens: [Int32], limit: Int, into blocks: inout [Int32], hashes: inout [UInt64]) -> Int {
        guard cachesPrefixes else { return 0 }
        var parent: UInt64 = 0, parentNumber: UInt64 = 0
        var start = 0
        while start + blockSize <= min(limit, tokens.count) {
            let slice = tokens[start..<start + blockSize]
            let key = Self.hash(parent: parent, tokens: slice)
            guard let block = cached[key], parentRegistration[Int(block)] == parentNumber,
                  blockTokens[Int(block) * blockSize..<(Int(block) + 1) * blockSize].elementsEqual(slice) else { break }
            if references[Int(block)] == 0 { unlink(block) }
            references[Int(block)] += 1
            blocks.append(block)
            hashes.append(key)
            parent = key
            parentNumber = registration[Int(block)]
            start += blockSize
        }
        return start
    }

    /// Records that `block` is full with `tokens`, after `parentBlock` (nil for a sequence's first
    /// block) whose prefix hashed `parent`, and returns its hash. It is not registered when an
    /// equal block is cached already (two sequences computed the same prefix at once: the first
    /// stays the one found, and this one is freed as holding nothing), nor when its parent is not
    /// the registered block of that prefix (then its keys were computed after other blocks).
    public mutating func register(_ block: Int32, after parentBlock: Int32?, parent: UInt64, tokens: ArraySlice<Int32>) -> UInt64 {
        let key = Self.hash(parent: parent, tokens: tokens)
        register(block, under: key, after: parentBlock, parent: parent, tokens: tokens)
        return key
    }

    /// ``register(_:after:parent:tokens:)`` under a given key (tests make collisions with it).
    mutating func register(_ block: Int32, under key: UInt64, after parentBlock: Int32?, parent: UInt64, tokens: ArraySlice<Int32>) {
        guard cachesPrefixes, blockHash[Int(block)] == nil, cached[key] == nil else { return }
        var parentNumber: UInt64 = 0
        if let parentBlock {
            guard blockHash[Int(parentBlock)] == parent else { return }
            parentNumber = registration[Int(parentBlock)]
        }
        registrations += 1
        cached[key] = block
        blockHash[Int(block)] = key
        registration[Int(block)] = registrations
        parentRegistration[Int(block)] = parentNumber
        let base = Int(block) * blockSize
        for (offset, token) in tokens.enumerated() { blockTokens[base + offset] = token }
    }

    // MARK: The free list

    private mutating func take() -> Int32 {
        let block = head
        precondition(block >= 0, "no free block")
        unlink(block)
        if let key = blockHash[Int(block)] {
            cached[key] = nil
            blockHash[Int(block)] = nil
            registration[Int(block)] = 0
        }
        references[Int(block)] = 1
        return block
    }

    private mutating func pushBack(_ block: Int32) {
        previous[Int(block)] = tail
        next[Int(block)] = -1
        if tail >= 0 { next[Int(tail)] = block } else { head = block }
        tail = block
        freeCount += 1
    }

    private mutating func pushFront(_ block: Int32) {
        next[Int(block)] = head
        previous[Int(block)] = -1
        if head >= 0 { previous[Int(head)] = block } else { tail = block }
        head = block
        freeCount += 1
    }

    private mutating func unlink(_ block: Int32) {
        let before = previous[Int(block)], after = next[Int(block)]
        if before >= 0 { next[Int(before)] = after } else { head = after }
        if after >= 0 { previous[Int(after)] = before } else { tail = before }
        previous[Int(block)] = -1
        next[Int(block)] = -1
        freeCount -= 1
    }
}
