@testable import Scheduling
import Testing

struct BlockAllocatorTests {
    @Test func growsReleasesAndRefusesWithoutChange() {
        var allocator = BlockAllocator(blockCount: 4, blockSize: 16)
        var blocks: [Int32] = []
        #expect(allocator.grow(&blocks, toCover: 17))
        #expect(blocks.count == 2 && allocator.freeCount == 2)
        #expect(allocator.grow(&blocks, toCover: 32))
        #expect(blocks.count == 2)
        #expect(!allocator.grow(&blocks, toCover: 80))
        #expect(blocks.count == 2 && allocator.freeCount == 2)
        var other: [Int32] = []
        #expect(allocator.grow(&other, toCover: 32))
        #expect(Set(blocks + other).count == 4 && allocator.usage == 1)
        allocator.release(&blocks)
        #expect(blocks.isEmpty && allocator.freeCount == 2)
    }
}

struct SchedulerTests {
    /// Plays the engine: runs steps, appends token 7 for every chunk that samples, and finishes
    /// sequences after `generate` tokens. Returns each step's chunks as (id, start, count).
    private func run(_ scheduler: Scheduler, generate: Int, steps: Int) -> [[(UInt64, Int, Int)]] {
        var trace: [[(UInt64, Int, Int)]] = []
        for _ in 0..<steps where scheduler.hasWork {
            let chunks = scheduler.schedule()
            trace.append(chunks.map { ($0.sequence.id, $0.start, $0.count) })
            let sampling = chunks.filter(\.samples).map(\.sequence)
            scheduler.completeStep()
            for sequence in sampling {
                sequence.append(7)
                if sequence.generatedCount == generate { scheduler.remove(sequence) }
            }
        }
        return trace
    }

    private func sequence(_ id: UInt64, length: Int) -> SequenceState {
        SequenceState(id: id, promptTokenIDs: [Int32](repeating: 1, count: length))
    }

    @Test func chunksLongPromptsUnderTheTokenBudget() {
        let scheduler = Scheduler(configuration: .init(maxBatchedTokens: 8, maxSequences: 4, maxModelLength: 64),
                                  allocator: BlockAllocator(blockCount: 16, blockSize: 4))
        scheduler.add(sequence(1, length: 20))
        let trace = run(scheduler, generate: 2, steps: 10)
        #expect(trace.map { $0.map(\.1) } == [[0], [8], [16], [20]])
        #expect(trace.map { $0.map(\.2) } == [[8], [8], [4], [1]])
        #expect(scheduler.allocator.freeCount == 16)
    }

    @Test func decodesGoFirstAndNewPromptsFillTheBudget() {
        let scheduler = Scheduler(configuration: .init(maxBatchedTokens: 6, maxSequences: 4, maxModelLength: 64),
                                  allocator: BlockAllocator(blockCount: 16, blockSize: 4))
        scheduler.add(sequence(1, length: 3))
        _ = run(scheduler, generate: 5, steps: 1)
        scheduler.add(sequence(2, length: 10))
        let trace = run(scheduler, generate: 5, steps: 2)
        #expect(trace[0].map(\.0) == [1, 2] && trace[0].map(\.2) == [1, 5])
        #expect(trace[1].map(\.0) == [1, 2] && trace[1].map(\.2) == [1, 5])
    }

    @Test func limitsRunningSequences() {
        let scheduler = Scheduler(configuration: .init(maxBatchedTokens: 100, maxSequences: 2, maxModelLength: 64),
                                  allocator: BlockAllocator(blockCount: 64, blockSize: 4))
        for id in 1...3 { scheduler.add(sequence(UInt64(id), length: 2)) }
        let trace = run(scheduler, generate: 2, steps: 3)
        #expect(trace[0].map(\.0) == [1, 2])
        #expect(trace[1].map(\.0) == [1, 2])
        #expect(trace[2].map(\.0) == [3])
    }

    @Test func preemptsTheLatestAndRecomputesItLater() {
        // Two sequences of 4 tokens in 3 blocks of 4: both start, and when the first needs a
        // second block the second is preempted, then prefilled again with its generated tokens.
        let scheduler = Scheduler(configuration: .init(maxBatchedTokens: 16, maxSequences: 4, maxModelLength: 12),
                                  allocator: BlockAllocator(blockCount: 3, blockSize: 4))
        let first = sequence(1, length: 4), second = sequence(2, length: 4)
        scheduler.add(first)
        scheduler.add(second)
        let trace = run(scheduler, generate: 6, steps: 40)
        #expect(trace[0].map(\.0) == [1, 2])
        #expect(scheduler.preemptionCount >= 1 && second.preemptionCount >= 1 && first.preemptionCount == 0)
        let resumed = trace.first { step in step.contains { $0.0 == 2 && $0.1 == 0 && $0.2 > 4 } }
        #expect(resumed != nil, "the preempted sequence is prefilled again with its generated tokens")
        #expect(first.phase == .finished && second.phase == .finished)
        #expect(first.generatedCount == 6 && second.generatedCount == 6)
        #expect(scheduler.allocator.freeCount == 3)
    }

    @Test func removingAWaitingOrRunningSequenceFreesItsBlocks() {
        let scheduler = Scheduler(configuration: .init(maxBatchedTokens: 4, maxSequences: 4, maxModelLength: 32),
                                  allocator: BlockAllocator(blockCount: 8, blockSize: 4))
        let running = sequence(1, length: 4), waiting = sequence(2, length: 4)
        scheduler.add(running)
        scheduler.add(waiting)
        _ = scheduler.schedule()
        scheduler.completeStep()
        #expect(running.phase == .running && waiting.phase == .waiting)
        scheduler.remove(waiting)
        scheduler.remove(running)
        #expect(!scheduler.hasWork && scheduler.allocator.freeCount == 8)
    }

    /// Removing waiting sequences costs O(1) each (a client that abandons a request of thousands
    /// of choices aborts them all at once); the queue keeps its order and its count.
    @Test func removingWaitingSequencesKeepsOrderAndCount() {
        let scheduler = Scheduler(configuration: .init(maxBatchedTokens: 64, maxSequences: 4, maxModelLength: 64),
                                  allocator: BlockAllocator(blockCount: 64, blockSize: 4))
        let sequences = (0..<20_000).map { sequence(UInt64($0), length: 2) }
        for sequence in sequences { scheduler.add(sequence) }
        #expect(scheduler.waitingCount == 20_000)
        let kept: Set<UInt64> = [3, 17, 19_999]
        for sequence in sequences.reversed() where !kept.contains(sequence.id) { scheduler.remove(sequence) }
        #expect(scheduler.waitingCount == 3 && scheduler.hasWork)
        let chunks = scheduler.schedule()
        #expect(chunks.map(\.sequence.id) == [3, 17, 19_999])
        #expect(scheduler.waitingCount == 0 && scheduler.running.count == 3)
        scheduler.completeStep()
        for chunk in scheduler.running { scheduler.remove(chunk) }
        #expect(!scheduler.hasWork && scheduler.allocator.freeCount == 64)
    }
}
