public import DequeModule

/// Continuous batching for one rank: decides, step by step, which tokens of which sequences are
/// computed, under a token budget, a sequence limit and the KV blocks available.
///
/// Policy (first come, first served, as vLLM's v1 scheduler): running sequences go first, in
/// arrival order, each with all its uncomputed tokens or as many as the budget leaves (chunked
/// prefill); then waiting sequences are admitted in order while budget, sequence slots and blocks
/// last. When a running sequence cannot grow, the most recently admitted running sequence is
/// preempted by recomputation: it loses its blocks and goes back to the head of the queue, to
/// be prefilled again with its prompt and the tokens it has generated.
///
/// With prefix caching, a sequence admitted from the queue first takes the cached blocks of the
/// longest prefix of its tokens (all but its last token, which a step must compute to sample the
/// next one), and starts computing after them; each block a step fills is registered for later
/// sequences. A preempted sequence finds its own blocks there when it comes back, unless they
/// were needed meanwhile.
///
/// Owned by the rank's step loop; not thread-safe.
public final class Scheduler {
    public let configuration: SchedulerConfiguration
    public private(set) var allocator: BlockAllocator
    /// Waiting sequences in order, and sequences removed while waiting, which are skipped
    /// (dropped) when they reach the front: removal then costs O(1) however long the queue.
    private var waiting: Deque<SequenceState> = []
    /// Sequences in `waiting` that still wait.
    public private(set) var waitingCount = 0
    public private(set) var running: [SequenceState] = []
    /// Preemptions since the scheduler started.
    public private(set) var preemptionCount = 0
    /// Tokens of admitted sequences looked up in the prefix cache, and those found there (vLLM's
    /// `prefix_cache_queries` and `prefix_cache_hits`).
    public private(set) var prefixQueryTokens = 0
    public private(set) var prefixHitTokens = 0
    private var chunks: [ScheduledChunk] = []

    /// `blockCount` blocks of `blockSize` tokens, with prefix caching as the configuration says.
    public init(configuration: SchedulerConfiguration, blockCount: Int, blockSize: Int) {
        precondition(blockCount * blockSize >= configuration.maxModelLength,
                     "the KV cache must hold at least one sequence of the longest length")
        self.configuration = configuration
        allocator = BlockAllocator(blockCount: blockCount, blockSize: blockSize, cachesPrefixes: configuration.cachesPrefixes)
        chunks.reserveCapacity(configuration.maxSequences)
    }

    public var hasWork: Bool { !running.isEmpty || waitingCount > 0 }

    public func add(_ sequence: SequenceState) {
        precondition(sequence.phase == .waiting && sequence.computedCount == 0, "only new sequences are added")
        precondition(sequence.tokenIDs.count <= configuration.maxModelLength, "a sequence longer than the model length")
        waiting.append(sequence)
        waitingCount += 1
    }

    /// Takes a finished or aborted sequence out of the queues and frees its blocks.
    public func remove(_ sequence: SequenceState) {
        switch sequence.phase {
        case .running:
            if let index = running.firstIndex(where: { $0 === sequence }) { running.remove(at: index) }
        case .waiting:
            waitingCount -= 1
            // Removed entries behind a head that cannot be admitted would pile up; sweeping when
            // they outnumber the live ones keeps removal O(1) amortised and memory bounded.
            if waiting.count > 2 * waitingCount + 64 { waiting.removeAll { $0 === sequence || $0.phase == .finished } }
        case .finished:
            return
        }
        allocator.release(&sequence.blocks)
        sequence.blockHashes.removeAll()
        sequence.phase = .finished
    }

    /// The chunks of the next step, possibly none. Valid until the next call.
    public func schedule() -> [ScheduledChunk] {
        chunks.removeAll(keepingCapacity: true)
        var budget = configuration.maxBatchedTokens
        var preempted = false
        var index = 0
        while index < running.count && budget > 0 {
            let sequence = running[index]
            let count = min(sequence.tokenIDs.count - sequence.computedCount, budget)
            var scheduledItself = true
            while !allocator.grow(&sequence.blocks, toCover: sequence.computedCount + count) {
                let victim = running.removeLast()
                preempt(victim)
                preempted = true
                if victim === sequence {
                    scheduledItself = false
                    break
                }
            }
            guard scheduledItself else { break }
            chunks.append(ScheduledChunk(sequence: sequence, start: sequence.computedCount, count: count))
            budget -= count
            index += 1
        }
        // Admitting while others were just preempted would only thrash.
        while let first = waiting.first, first.phase == .finished { waiting.removeFirst() }
        while !preempted && budget > 0 && running.count < configuration.maxSequences, let sequence = waiting.first {
            let hit = takeCachedPrefix(sequence)
            let count = min(sequence.tokenIDs.count - sequence.computedCount, budget)
            guard allocator.grow(&sequence.blocks, toCover: sequence.computedCount + count) else {
                // It waits on: the prefix it took goes back to the cache, still cached.
                allocator.release(&sequence.blocks)
                sequence.blockHashes.removeAll()
                sequence.computedCount = 0
                break
            }
            if sequence.sharesPrefixes && configuration.cachesPrefixes {
                prefixQueryTokens += sequence.tokenIDs.count
                prefixHitTokens += hit
            }
            waiting.removeFirst()
            waitingCount -= 1
            while let first = waiting.first, first.phase == .finished { waiting.removeFirst() }
            sequence.phase = .running
            running.append(sequence)
            chunks.append(ScheduledChunk(sequence: sequence, start: sequence.computedCount, count: count))
            budget -= count
        }
        return chunks
    }

    /// Marks the tokens of the last `schedule()` as computed (their keys and values are cached).
    public func completeStep() {
        for chunk in chunks {
            chunk.sequence.computedCount += chunk.count
            registerFullBlocks(chunk.sequence)
        }
        chunks.removeAll(keepingCapacity: true)
    }

    /// The cached blocks of the longest prefix of a sequence about to be admitted; returns the tokens they hold.
    private func takeCachedPrefix(_ sequence: SequenceState) -> Int {
        guard configuration.cachesPrefixes, sequence.sharesPrefixes, sequence.computedCount == 0, sequence.blocks.isEmpty else { return 0 }
        let hit = allocator.takePrefix(of: sequence.tokenIDs, limit: sequence.tokenIDs.count - 1,
                                       into: &sequence.blocks, hashes: &sequence.blockHashes)
        sequence.computedCount = hit
        return hit
    }

    /// Registers the blocks of `sequence` that its computed tokens have filled since the last step.
    private func registerFullBlocks(_ sequence: SequenceState) {
        guard configuration.cachesPrefixes, sequence.sharesPrefixes else { return }
        let blockSize = allocator.blockSize
        while (sequence.blockHashes.count + 1) * blockSize <= sequence.computedCount {
            let index = sequence.blockHashes.count
            let parent = index == 0 ? 0 : sequence.blockHashes[index - 1]
            let tokens = sequence.tokenIDs[index * blockSize..<(index + 1) * blockSize]
            sequence.blockHashes.append(allocator.register(sequence.blocks[index], after: index == 0 ? nil : sequence.blocks[index - 1],
                                                           parent: parent, tokens: tokens))
        }
    }

    private func preempt(_ sequence: SequenceState) {
        allocator.release(&sequence.blocks)
        sequence.blockHashes.removeAll()
        sequence.computedCount = 0
        sequence.phase = .waiting
        sequence.preemptionCount += 1
        preemptionCount += 1
        waiting.prepend(sequence)
        waitingCount += 1
    }
}
