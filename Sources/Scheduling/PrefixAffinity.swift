public import DequeModule

/// Cache-aware routing across data-parallel ranks: a request goes to the rank that holds the
/// longest cached prefix of its prompt, unless that rank has more than `margin` requests in flight
/// beyond the least loaded rank, when load decides.
///
/// The front end cannot see the ranks' caches, so it remembers what it sent: the prefix hashes
/// (``BlockAllocator/hash(parent:tokens:)``, the ranks' own) of the prompts routed to each rank,
/// the most recently used first and at most as many as the rank's cache has blocks (as the rank
/// reports it; `defaultCapacity` before it has), as SGLang's router keeps an approximate tree per
/// worker. A rank that evicted a prefix the router still remembers costs one miss, not a wrong answer.
///
/// Owned by the router, under its lock; planning only: no sockets, no engines.
public struct PrefixAffinity: Sendable {
    public let blockSize: Int
    public let defaultCapacity: Int
    public let margin: Int

    private struct Memory {
        /// The tick each remembered hash was last routed at.
        var lastUse: [UInt64: UInt64] = [:]
        /// Hashes in the order they were touched; an entry whose tick is not its hash's last use is stale.
        var order: Deque<(hash: UInt64, tick: UInt64)> = []
    }

    private var memories: [Int: Memory] = [:]
    private var capacities: [Int: Int] = [:]
    private var tick: UInt64 = 0

    public init(blockSize: Int, defaultCapacity: Int = 4096, margin: Int) {
        precondition(blockSize > 0 && defaultCapacity > 0 && margin >= 0, "prefix routing needs a block size, a capacity and a margin")
        self.blockSize = blockSize
        self.defaultCapacity = defaultCapacity
        self.margin = margin
    }

    /// The blocks `rank`'s cache holds, as it reported them.
    public mutating func setCapacity(_ blocks: Int, of rank: Int) {
        if blocks > 0 { capacities[rank] = blocks }
    }

    /// The prefix hashes of the full blocks of `tokens`, as a rank's cache computes them.
    public static func hashes(of tokens: [Int], blockSize: Int) -> [UInt64] {
        var hashes: [UInt64] = []
        hashes.reserveCapacity(tokens.count / blockSize)
        var parent: UInt64 = 0
        var block = [Int32](repeating: 0, count: blockSize)
        var start = 0
        while start + blockSize <= tokens.count {
            for offset in 0..<blockSize { block[offset] = Int32(truncatingIfNeeded: tokens[start + offset]) }
            parent = BlockAllocator.hash(parent: parent, tokens: block[...])
            hashes.append(parent)
            start += blockSize
        }
        return hashes
    }

    /// Leading blocks of `hashes` that `rank` is remembered to hold.
    public func matchedBlocks(_ hashes: [UInt64], on rank: Int) -> Int {
        guard let memory = memories[rank] else { return 0 }
        var count = 0
        while count < hashes.count, memory.lastUse[hashes[count]] != nil { count += 1 }
        return count
    }

    /// The rank for a prompt of prefix `hashes` among `candidates` (rank and requests in flight,
    /// not empty); remembers the prompt there.
    public mutating func route(_ hashes: [UInt64], among candidates: [(rank: Int, load: Int)]) -> Int {
        precondition(!candidates.isEmpty, "routing needs a rank")
        var leastLoaded = candidates[0]
        for candidate in candidates.dropFirst() where candidate.load < leastLoaded.load { leastLoaded = candidate }
        var best = leastLoaded, bestMatch = 0
        for candidate in candidates where candidate.load <= leastLoaded.load + margin {
            let match = matchedBlocks(hashes, on: candidate.rank)
            if match > bestMatch || (match == bestMatch && match > 0 && candidate.load < best.load) {
                (best, bestMatch) = (candidate, match)
            }
        }
        remember(hashes, on: best.rank)
        return best.rank
    }

    /// Forgets every rank but `ranks` (the others left the cluster, their caches with them).
    public mutating func keep(only ranks: Set<Int>) {
        for rank in memories.keys where !ranks.contains(rank) { memories[rank] = nil }
        for rank in capacities.keys where !ranks.contains(rank) { capacities[rank] = nil }
    }

    private mutating func remember(_ hashes: [UInt64], on rank: Int) {
        let capacity = capacities[rank] ?? defaultCapacity
        var memory = memories.removeValue(forKey: rank) ?? Memory()
        // Last block first, so that a prompt's head is its most recent entry and eviction takes
        // prefixes from their end, as a rank's cache does (only leading blocks match).
        for hash in hashes.reversed() {
            tick += 1
            memory.lastUse[hash] = tick
            memory.order.append((hash, tick))
        }
        while memory.lastUse.count > capacity, let oldest = memory.order.popFirst() {
            if memory.lastUse[oldest.hash] == oldest.tick { memory.lastUse[oldest.hash] = nil }
        }
        // Stale entries are dropped once they outnumber the live ones, so the order stays bounded.
        if memory.order.count > 2 * capacity + 64 {
            memory.order = Deque(memory.order.filter { memory.lastUse[$0.hash] == $0.tick })
        }
        memories[rank] = memory
    }
}
