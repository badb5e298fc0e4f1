/// Hands out the fixed-size blocks of one rank's paged KV cache.
///
/// Owned by the rank's step loop (through its `Scheduler`); not thread-safe. Blocks are plain
/// indices into every layer's cache tensors; a free block holds stale data that the next owner
/// overwrites before it reads.
public struct BlockAllocator: Sendable {
    public let blockCount: Int
    public let blockSize: Int
    /// A stack: the most recently freed block is reused first, which keeps the working set warm.
    private var free: [Int32]

    public init(blockCount: Int, blockSize: Int) {
        precondition(blockCount > 0 && blockSize > 0, "a KV cache needs at least one block of at least one token")
        self.blockCount = blockCount
        self.blockSize = blockSize
        free = (0..<Int32(blockCount)).reversed()
    }

    public var freeCount: Int { free.count }
    public var usedCount: Int { blockCount - free.count }
    /// The fraction of blocks in use, 0…1.
    public var usage: Double { Double(usedCount) / Double(blockCount) }

    /// Blocks needed to hold `tokens` positions.
    public func blocksNeeded(forTokens tokens: Int) -> Int { (tokens + blockSize - 1) / blockSize }

    /// Grows `blocks` until it covers `tokens` positions; false (and `blocks` unchanged) when too few are free.
    public mutating func grow(_ blocks: inout [Int32], toCover tokens: Int) -> Bool {
        let missing = blocksNeeded(forTokens: tokens) - blocks.count
        guard missing > 0 else { return true }
        guard missing <= free.count else { return false }
        for _ in 0..<missing { blocks.append(free.removeLast()) }
        return true
    }

    /// Returns `blocks` to the free list and empties it.
    public mutating func release(_ blocks: inout [Int32]) {
        free.append(contentsOf: blocks.reversed())
        blocks.removeAll(keepingCapacity: true)
    }
}
