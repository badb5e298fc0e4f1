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
        let scheduler = Scheduler(configuration: .init(maxBatchedTokens: 8, maxSequences: 4, maxModelLength: 64, cachesPrefixes: false),
                                  blockCount: 16, blockSize: 4)
        scheduler.add(sequence(1, length: 20))
        let trace = run(scheduler, generate: 2, steps: 10)
        #expect(trace.map { $0.map(\.1) } == [[0], [8], [16], [20]])
        #expect(trace.map { $0.map(\.2) } == [[8], [8], [4], [1]])
        #expect(scheduler.allocator.freeCount == 16)
    }

    @Test func decodesGoFirstAndNewPromptsFillTheBudget() {
        let scheduler = Scheduler(configuration: .init(maxBatchedTokens: 6, maxSequences: 4, maxModelLength: 64, cachesPrefixes: false),
                                  blockCount: 16, blockSize: 4)
        scheduler.add(sequence(1, length: 3))
        _ = run(scheduler, generate: 5, steps: 1)
        scheduler.add(sequence(2, length: 10))
        let trace = run(scheduler, generate: 5, steps: 2)
        #expect(trace[0].map(\.0) == [1, 2] && trace[0].map(\.2) == [1, 5])
        #expect(trace[1].map(\.0) == [1, 2] && trace[1].map(\.2) == [1, 5])
    }

    @Test func limitsRunningSequences() {
        let scheduler = Scheduler(configuration: .init(maxBatchedTokens: 100, maxSequences: 2, maxModelLength: 64, cachesPrefixes: false),
                                  blockCount: 64, blockSize: 4)
        for id in 1...3 { scheduler.add(sequence(UInt64(id), length: 2)) }
        let trace = run(scheduler, generate: 2, steps: 3)
        #expect(trace[0].map(\.0) == [1, 2])
        #expect(trace[1].map(\.0) == [1, 2])
        #expect(trace[2].map(\.0) == [3])
    }

    @Test func preemptsTheLatestAndRecomputesItLater() {
        // Two sequences of 4 tokens in 3 blocks of 4: both start, and when the first needs a
        // second block the second is preempted, then prefilled again with its generated tokens.
        let scheduler = Scheduler(configuration: .init(maxBatchedTokens: 16, maxSequences: 4, maxModelLength: 12, cachesPrefixes: false),
                                  blockCount: 3, blockSize: 4)
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
        let scheduler = Scheduler(configuration: .init(maxBatchedTokens: 4, maxSequences: 4, maxModelLength: 32, cachesPrefixes: false),
                                  blockCount: 8, blockSize: 4)
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
        let scheduler = Scheduler(configuration: .init(maxBatchedTokens: 64, maxSequences: 4, maxModelLength: 64, cachesPrefixes: false),
                                  blockCount: 64, blockSize: 4)
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

/// Automatic prefix caching: full blocks found by their chained hash, shared by reference, kept
/// in least-recently-freed order until their memory is needed.
struct PrefixCacheTests {
    private func tokens(_ values: [Int]) -> [Int32] { values.map(Int32.init) }

    /// Fills `blocks` to cover `tokens` and registers every full block, as a scheduler does when a step computed them.
    private func compute(_ allocator: inout BlockAllocator, _ tokens: [Int32], blocks: inout [Int32], hashes: inout [UInt64]) {
        #expect(allocator.grow(&blocks, toCover: tokens.count))
        while (hashes.count + 1) * allocator.blockSize <= tokens.count {
            let index = hashes.count
            hashes.append(allocator.register(blocks[index], after: index == 0 ? nil : blocks[index - 1], parent: hashes.last ?? 0,
                                             tokens: tokens[index * allocator.blockSize..<(index + 1) * allocator.blockSize]))
        }
    }

    @Test func aPrefixIsFoundByItsWholeBlocksAndSharedByReference() {
        var allocator = BlockAllocator(blockCount: 8, blockSize: 4, cachesPrefixes: true)
        let first = tokens(Array(0..<10))
        var blocks: [Int32] = [], hashes: [UInt64] = []
        compute(&allocator, first, blocks: &blocks, hashes: &hashes)
        #expect(hashes.count == 2 && allocator.cachedCount == 2 && allocator.freeCount == 5)

        // The same first block, then a different second one: one block is found.
        var shared: [Int32] = [], sharedHashes: [UInt64] = []
        #expect(allocator.takePrefix(of: tokens([0, 1, 2, 3, 4, 5, 6, 99, 8]), limit: 8, into: &shared, hashes: &sharedHashes) == 4)
        #expect(shared == [blocks[0]] && sharedHashes == [hashes[0]] && allocator.freeCount == 5)
        // Held by two: the first holder's release keeps it held.
        let cachedSecond = blocks[1]
        allocator.release(&blocks)
        #expect(allocator.freeCount == 7)
        // Five new blocks come first from those that hold nothing reusable: the cached second block stays.
        var other: [Int32] = []
        #expect(allocator.grow(&other, toCover: 20) && !other.contains(shared[0]) && !other.contains(cachedSecond))
        #expect(allocator.cachedCount == 2)
        allocator.release(&other)
        allocator.release(&shared)
        #expect(allocator.freeCount == 8)

        // After both let go, the whole prefix is still found, up to the limit.
        var again: [Int32] = [], againHashes: [UInt64] = []
        #expect(allocator.takePrefix(of: first, limit: 9, into: &again, hashes: &againHashes) == 8)
        #expect(againHashes == hashes && allocator.freeCount == 6)
        allocator.release(&again)
        var capped: [Int32] = [], cappedHashes: [UInt64] = []
        #expect(allocator.takePrefix(of: first, limit: 7, into: &capped, hashes: &cappedHashes) == 4)
        allocator.release(&capped)
    }

    @Test func theSameBlockAfterADifferentPrefixIsAnotherBlock() {
        var allocator = BlockAllocator(blockCount: 8, blockSize: 2, cachesPrefixes: true)
        var blocks: [Int32] = [], hashes: [UInt64] = []
        compute(&allocator, tokens([1, 2, 3, 4]), blocks: &blocks, hashes: &hashes)
        allocator.release(&blocks)
        var found: [Int32] = [], foundHashes: [UInt64] = []
        // [3, 4] is cached, but after [1, 2]: a prompt that starts with it finds nothing.
        #expect(allocator.takePrefix(of: tokens([3, 4, 5]), limit: 3, into: &found, hashes: &foundHashes) == 0)
        #expect(BlockAllocator.hash(parent: 0, tokens: [3, 4]) != hashes[1])
    }

    @Test func freedPrefixesAreEvictedLeastRecentlyFreedFirstAndFromTheirEnd() {
        var allocator = BlockAllocator(blockCount: 6, blockSize: 2, cachesPrefixes: true)
        var old: [Int32] = [], oldHashes: [UInt64] = []
        compute(&allocator, tokens([1, 2, 3, 4, 5, 6]), blocks: &old, hashes: &oldHashes)
        allocator.release(&old)
        var recent: [Int32] = [], recentHashes: [UInt64] = []
        compute(&allocator, tokens([7, 8, 9, 10, 11]), blocks: &recent, hashes: &recentHashes)
        // 3 blocks of the old prefix were free and cached; the recent one took the 3 never used.
        #expect(allocator.cachedCount == 5 && allocator.freeCount == 3)
        allocator.release(&recent)
        #expect(allocator.freeCount == 6)
        // A new sequence of 2 blocks: first the recent sequence's unfilled last block (holds
        // nothing reusable), then the old prefix's last block.
        var fresh: [Int32] = []
        #expect(allocator.grow(&fresh, toCover: 4))
        #expect(allocator.cachedCount == 4)
        var probe: [Int32] = [], probeHashes: [UInt64] = []
        #expect(allocator.takePrefix(of: tokens([1, 2, 3, 4, 5, 6, 0]), limit: 6, into: &probe, hashes: &probeHashes) == 4)
        allocator.release(&probe)
        probeHashes.removeAll()
        #expect(allocator.takePrefix(of: tokens([7, 8, 9, 10, 11]), limit: 4, into: &probe, hashes: &probeHashes) == 4)
        allocator.release(&probe)
        allocator.release(&fresh)
    }

    @Test func aHashCollisionIsAMissNotAWrongBlock() {
        var allocator = BlockAllocator(blockCount: 6, blockSize: 2, cachesPrefixes: true)
        var blocks: [Int32] = []
        #expect(allocator.grow(&blocks, toCover: 4))
        // Block 0 holds [1, 2] but is filed under the hash of [5, 6], as a colliding block would be.
        let colliding = BlockAllocator.hash(parent: 0, tokens: [5, 6])
        allocator.register(blocks[0], under: colliding, after: nil, parent: 0, tokens: [1, 2])
        // Its child, [3, 4], registered after it.
        _ = allocator.register(blocks[1], after: blocks[0], parent: colliding, tokens: [3, 4])
        allocator.release(&blocks)
        var found: [Int32] = [], hashes: [UInt64] = []
        // [5, 6] finds the entry, whose tokens differ: a miss.
        #expect(allocator.takePrefix(of: tokens([5, 6, 3, 4, 9]), limit: 4, into: &found, hashes: &hashes) == 0)
        #expect(found.isEmpty && allocator.freeCount == 6)
    }

    /// A parent evicted and its hash filed again for another block does not make its old child reachable:
    /// the child was registered after the old parent's registration, which the new one is not.
    @Test func aChildOfAnEvictedParentIsAMiss() {
        var allocator = BlockAllocator(blockCount: 3, blockSize: 2, cachesPrefixes: true)
        var first: [Int32] = [], hashes: [UInt64] = []
        compute(&allocator, tokens([1, 2, 3, 4]), blocks: &first, hashes: &hashes)
        // The second block is kept held; the first is freed and then evicted by a new sequence.
        var parent = [first[0]], child = [first[1]]
        allocator.release(&parent)
        var other: [Int32] = []
        #expect(allocator.grow(&other, toCover: 4) && other.contains(first[0]))
        // The other sequence's first block is [1, 2] again, under the same hash.
        _ = allocator.register(other[0], after: nil, parent: 0, tokens: [1, 2])
        var found: [Int32] = [], foundHashes: [UInt64] = []
        #expect(allocator.takePrefix(of: tokens([1, 2, 3, 4, 5]), limit: 4, into: &found, hashes: &foundHashes) == 2)
        #expect(found == [other[0]])
        allocator.release(&found)
        allocator.release(&child)
        allocator.release(&other)
    }

    private func run(_ scheduler: Scheduler, until done: [SequenceState], generate: Int) -> [(UInt64, Int, Int)] {
        var trace: [(UInt64, Int, Int)] = []
        var steps = 0
        while done.contains(where: { $0.phase != .finished }) && steps < 500 {
            steps += 1
            let chunks = scheduler.schedule()
            trace += chunks.map { ($0.sequence.id, $0.start, $0.count) }
            let sampling = chunks.filter(\.samples).map(\.sequence)
            scheduler.completeStep()
            for sequence in sampling {
                sequence.append(Int32(1000 + sequence.generatedCount))
                if sequence.generatedCount == generate { scheduler.remove(sequence) }
            }
        }
        return trace
    }

    @Test func aRepeatedPromptStartsAfterItsCachedBlocksAndTheCountersSaySo() {
        let scheduler = Scheduler(configuration: .init(maxBatchedTokens: 64, maxSequences: 4, maxModelLength: 64),
                                  blockCount: 32, blockSize: 4)
        let system = Array(0..<12)
        let first = SequenceState(id: 1, promptTokenIDs: tokens(system + [50, 51, 52]))
        scheduler.add(first)
        _ = run(scheduler, until: [first], generate: 2)
        // Same 12-token system prompt, another question: three blocks found, prefill starts at 12.
        let second = SequenceState(id: 2, promptTokenIDs: tokens(system + [60, 61]))
        scheduler.add(second)
        let trace = run(scheduler, until: [second], generate: 2)
        #expect(trace.first.map { [$0.1, $0.2] } == [12, 2])
        // A prompt that is exactly cached blocks still computes its last block's last token.
        let third = SequenceState(id: 3, promptTokenIDs: tokens(system))
        scheduler.add(third)
        #expect(run(scheduler, until: [third], generate: 1).first.map { [$0.1, $0.2] } == [8, 4])
        #expect(scheduler.prefixQueryTokens == 15 + 14 + 12 && scheduler.prefixHitTokens == 0 + 12 + 8)
        #expect(scheduler.allocator.freeCount == 32)
    }

    @Test func aSequenceAskingForPromptLogprobsNeitherFindsNorLeavesPrefixes() {
        let scheduler = Scheduler(configuration: .init(maxBatchedTokens: 64, maxSequences: 4, maxModelLength: 64),
                                  blockCount: 32, blockSize: 4)
        let first = SequenceState(id: 1, promptTokenIDs: tokens(Array(0..<9)))
        scheduler.add(first)
        _ = run(scheduler, until: [first], generate: 1)
        let scoring = SequenceState(id: 2, promptTokenIDs: tokens(Array(0..<9)), sharesPrefixes: false)
        scheduler.add(scoring)
        #expect(run(scheduler, until: [scoring], generate: 1).first.map { [$0.1, $0.2] } == [0, 9])
        #expect(scheduler.prefixQueryTokens == 9 && scheduler.allocator.cachedCount == 2)
    }

    @Test func aPreemptedSequenceResumesAfterItsOwnCachedBlocks() {
        // As the preemption test above, with caching: the preempted sequence finds its own
        // blocks, prompt and generated tokens, unless the other took them meanwhile.
        let scheduler = Scheduler(configuration: .init(maxBatchedTokens: 16, maxSequences: 4, maxModelLength: 24),
                                  blockCount: 6, blockSize: 4)
        let first = SequenceState(id: 1, promptTokenIDs: tokens([1, 2, 3, 4, 5])), second = SequenceState(id: 2, promptTokenIDs: tokens([9, 8, 7, 6, 5]))
        scheduler.add(first)
        scheduler.add(second)
        let trace = run(scheduler, until: [first, second], generate: 12)
        #expect(second.preemptionCount >= 1)
        // Preempted when the first needs a fourth block, the second leaves three full blocks,
        // freed last first: the first takes the third, and the second comes back after the two
        // others, its prompt and first generated tokens.
        let resumed = trace.last { $0.0 == 2 && $0.2 > 1 }
        #expect(resumed.map { $0.1 } == 8 && scheduler.prefixHitTokens == 8, "\(trace) hits \(scheduler.prefixHitTokens)")
        #expect(first.generatedCount == 12 && second.generatedCount == 12)
        #expect(scheduler.allocator.freeCount == 6)
    }
}
