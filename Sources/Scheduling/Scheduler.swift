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
    private var chunks: [ScheduledChunk] = []

    public init(configuration: SchedulerConfiguration, allocator: BlockAllocator) {
        precondition(allocator.blockCount * allocator.blockSize >= configuration.maxModelLength,
                     "the KV cache must hold at least one sequence of the longest length")
        self.configuration = configuration
        self.allocator = allocator
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
            let count = min(sequence.tokenIDs.count - sequence.computedCount, budget)
            guard allocator.grow(&sequence.blocks, toCover: sequence.computedCount + count) else { break }
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
        for chunk in chunks { chunk.sequence.computedCount += chunk.count }
        chunks.removeAll(keepingCapacity: true)
    }

    private func preempt(_ sequence: SequenceState) {
        allocator.release(&sequence.blocks)
        sequence.computedCount = 0
        sequence.phase = .waiting
        sequence.preemptionCount += 1
        preemptionCount += 1
        waiting.prepend(sequence)
        waitingCount += 1
    }
}
