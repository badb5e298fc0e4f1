import Scheduling
import Testing

/// Cache-aware routing's decisions: the longest remembered prefix wins within the margin, load
/// decides beyond it, and memories are bounded by what a rank's cache holds.
struct PrefixAffinityTests {
    private func prompt(_ prefix: Int, length: Int = 64, suffix: Int = 0) -> [Int] {
        (0..<length).map { prefix * 1000 + $0 } + (0..<suffix).map { 900_000 + $0 }
    }

    @Test func hashesAreTheRanksOwn() {
        let tokens = prompt(1, length: 40)
        let hashes = PrefixAffinity.hashes(of: tokens, blockSize: 16)
        #expect(hashes.count == 2)
        let first = BlockAllocator.hash(parent: 0, tokens: tokens[0..<16].map(Int32.init)[...])
        #expect(hashes[0] == first && hashes[1] == BlockAllocator.hash(parent: first, tokens: tokens[16..<32].map(Int32.init)[...]))
    }

    @Test func aPromptFollowsItsPrefixUntilTheLoadGapPassesTheMargin() {
        var affinity = PrefixAffinity(blockSize: 16, margin: 2)
        let shared = PrefixAffinity.hashes(of: prompt(7), blockSize: 16)
        // Nothing remembered: the least loaded (the lower rank on a tie).
        #expect(affinity.route(shared, among: [(0, 0), (1, 0)]) == 0)
        // Remembered on rank 0: it keeps the prefix while within the margin of rank 1's load.
        #expect(affinity.route(shared, among: [(0, 2), (1, 0)]) == 0)
        #expect(affinity.matchedBlocks(shared, on: 0) == 4 && affinity.matchedBlocks(shared, on: 1) == 0)
        // Beyond the margin, load decides; the prefix is then remembered on both.
        #expect(affinity.route(shared, among: [(0, 3), (1, 0)]) == 1)
        #expect(affinity.matchedBlocks(shared, on: 1) == 4)
        // The longer match wins over the lower load within the margin: a prompt of the shared
        // prefix's first two blocks, then its own, remembered longer on rank 2 than on rank 0.
        let twoBlocks = PrefixAffinity.hashes(of: Array(prompt(7).prefix(32)) + prompt(8, length: 32), blockSize: 16)
        #expect(affinity.route(twoBlocks, among: [(2, 0)]) == 2)
        let oneBlock = PrefixAffinity.hashes(of: Array(prompt(7).prefix(16)) + prompt(9, length: 48), blockSize: 16)
        #expect(affinity.matchedBlocks(oneBlock, on: 0) == 1 && affinity.matchedBlocks(twoBlocks, on: 2) == 4)
        #expect(affinity.route(twoBlocks, among: [(0, 0), (1, 0), (2, 2)]) == 2)
        // A rank that left is forgotten.
        affinity.keep(only: [0])
        #expect(affinity.matchedBlocks(shared, on: 1) == 0 && affinity.matchedBlocks(shared, on: 0) == 4)
    }

    @Test func aRankRemembersAtMostWhatItsCacheHoldsMostRecentFirst() {
        var affinity = PrefixAffinity(blockSize: 16, defaultCapacity: 8, margin: 100)
        let first = PrefixAffinity.hashes(of: prompt(1), blockSize: 16)
        let second = PrefixAffinity.hashes(of: prompt(2), blockSize: 16)
        let third = PrefixAffinity.hashes(of: prompt(3), blockSize: 16)
        #expect(affinity.route(first, among: [(0, 0)]) == 0)
        #expect(affinity.route(second, among: [(0, 0)]) == 0)
        #expect(affinity.matchedBlocks(first, on: 0) == 4 && affinity.matchedBlocks(second, on: 0) == 4)
        // Touching the first makes the second the least recently used: the third evicts it.
        _ = affinity.route(first, among: [(0, 0)])
        _ = affinity.route(third, among: [(0, 0)])
        #expect(affinity.matchedBlocks(first, on: 0) == 4 && affinity.matchedBlocks(third, on: 0) == 4)
        #expect(affinity.matchedBlocks(second, on: 0) == 0)
        // A reported capacity replaces the default.
        affinity.setCapacity(4, of: 0)
        _ = affinity.route(second, among: [(0, 0)])
        #expect(affinity.matchedBlocks(second, on: 0) == 4 && affinity.matchedBlocks(first, on: 0) == 0)
    }

    /// The routing's point, on a workload like `bench serve --dataset-name prefix_repetition`:
    /// ten prefixes over four ranks, each request one of them then a unique suffix. By load
    /// alone each rank sees every prefix; by prefix, each prefix stays on a few ranks.
    @Test func prefixesStayOnTheirRanksWhileTheLoadStaysBalanced() {
        var affinity = PrefixAffinity(blockSize: 16, margin: 4)
        var loads = [0, 0, 0, 0]
        var seen = Array(repeating: Set<Int>(), count: 4)
        var chosen: [Int] = []
        for request in 0..<400 {
            let prefix = request % 10
            let hashes = PrefixAffinity.hashes(of: prompt(prefix, length: 256, suffix: 32), blockSize: 16)
            let rank = affinity.route(hashes, among: loads.enumerated().map { ($0.offset, $0.element) })
            loads[rank] += 1
            seen[rank].insert(prefix)
            chosen.append(rank)
            // Requests finish in arrival order, twelve behind: some load is always in flight.
            if request >= 12 { loads[chosen[request - 12]] -= 1 }
        }
        #expect(loads.max()! - loads.min()! <= 4 + 1)
        let prefixesPerRank = seen.map(\.count)
        #expect(prefixesPerRank.reduce(0, +) <= 20, "by load alone every rank would see all ten: \(prefixesPerRank)")
    }
}
