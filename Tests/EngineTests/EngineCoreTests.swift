import Compute
import ComputeCPU
import Engine
import Foundation
import Messages
import Models
import Scheduling
import Synchronization
import Testing

/// Collects each request's outputs as a sink would deliver them.
final class OutputCollector: Sendable {
    private let outputs = Mutex<[RequestID: [EngineOutput]]>([:])

    var sink: OutputSink { { output in self.outputs.withLock { $0[output.requestID, default: []].append(output) } } }

    func tokens(_ id: RequestID) -> [Int] { outputs.withLock { $0[id, default: []].flatMap(\.tokenIDs) } }
    func finishReason(_ id: RequestID) -> FinishReason? { outputs.withLock { $0[id]?.last?.finishReason } }
    func all(_ id: RequestID) -> [EngineOutput] { outputs.withLock { $0[id, default: []] } }
}

enum EngineFixture {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/qwen3_moe").path

    static func core(blockCount: Int = 64, blockSize: Int = 4, budget: Int = 64, sequences: Int = 64,
                     maxModelLength: Int = 96, cachesPrefixes: Bool = true) throws -> EngineCore {
        let backend = CPUBackend()
        let model = try CausalLM.load(folder: folder, format: .auto, on: backend)
        let cache = try KVCache(model: model, blockSize: blockSize, blockCount: blockCount, backend: backend)
        return try EngineCore(model: model, backend: backend, cache: cache, configuration: SchedulerConfiguration(
            maxBatchedTokens: budget, maxSequences: sequences, maxModelLength: maxModelLength, cachesPrefixes: cachesPrefixes))
    }

    static func runToEnd(_ core: EngineCore) throws {
        var steps = 0
        while try core.step() {
            steps += 1
            precondition(steps < 10_000, "the engine did not finish")
        }
    }
}

struct EngineCoreTests {
    /// 48 greedy requests of mixed lengths through a small cache and budget (chunked prefill and
    /// preemption both happen) give exactly the tokens each gives alone.
    @Test func concurrentGreedyRequestsMatchRunningAlone() throws {
        // Seeded: a failure comes back with the same requests.
        var generator = SplitMix64(seed: 48)
        let prompts = (0..<48).map { _ in (0..<Int.random(in: 1...40, using: &generator)).map { _ in Int.random(in: 0..<2000, using: &generator) } }
        let maxTokens = (0..<48).map { _ in Int.random(in: 1...16, using: &generator) }

        let crowded = try EngineFixture.core(blockCount: 40, budget: 24, sequences: 16, maxModelLength: 64)
        let together = OutputCollector()
        for (index, prompt) in prompts.enumerated() {
            crowded.add(EngineRequest(id: RequestID(UInt64(index)), promptTokenIDs: prompt, sampling: .greedy, maxTokens: maxTokens[index]),
                        sink: together.sink)
        }
        try EngineFixture.runToEnd(crowded)
        #expect(crowded.scheduler.preemptionCount > 0, "the test must exercise preemption")
        #expect(crowded.scheduler.allocator.freeCount == 39, "all blocks but the padding block are free again")

        let roomy = try EngineFixture.core()
        let alone = OutputCollector()
        for (index, prompt) in prompts.enumerated() {
            roomy.add(EngineRequest(id: RequestID(UInt64(index)), promptTokenIDs: prompt, sampling: .greedy, maxTokens: maxTokens[index]),
                      sink: alone.sink)
            try EngineFixture.runToEnd(roomy)
            #expect(together.tokens(RequestID(UInt64(index))) == alone.tokens(RequestID(UInt64(index))), "request \(index), prompt \(prompt)")
            #expect(together.tokens(RequestID(UInt64(index))).count == maxTokens[index])
            #expect(together.finishReason(RequestID(UInt64(index))) == .length)
        }
    }

    /// Prompts that share long prefixes (system prompts, repeated questions, a request's choices)
    /// through a small cache with chunked prefill and preemption: greedy tokens equal those of
    /// the same requests without prefix caching, and most prompt tokens were found in the cache.
    @Test func prefixCachingChangesNoGreedyToken() throws {
        var generator = SplitMix64(seed: 23)
        let systems = (0..<3).map { _ in (0..<Int.random(in: 9...30, using: &generator)).map { _ in Int.random(in: 0..<2000, using: &generator) } }
        var prompts: [[Int]] = []
        for index in 0..<36 {
            let question = (0..<Int.random(in: 1...9, using: &generator)).map { _ in Int.random(in: 0..<2000, using: &generator) }
            // Every fourth repeats the one before it whole, as n > 1 choices or a retried request would.
            prompts.append(index % 4 == 3 ? prompts[index - 1] : systems[index % 3] + question)
        }
        func serve(cachesPrefixes: Bool, waves: Bool) throws -> (OutputCollector, EngineCore) {
            let core = try EngineFixture.core(blockCount: 48, budget: 20, sequences: 12, maxModelLength: 64, cachesPrefixes: cachesPrefixes)
            let collector = OutputCollector()
            for (index, prompt) in prompts.enumerated() {
                core.add(EngineRequest(id: RequestID(UInt64(index)), promptTokenIDs: prompt, sampling: .greedy, maxTokens: 6 + index % 7),
                         sink: collector.sink)
                // In waves, so that later requests find what earlier ones left.
                if waves && index % 6 == 5 { try EngineFixture.runToEnd(core) }
            }
            try EngineFixture.runToEnd(core)
            return (collector, core)
        }
        let (plain, plainCore) = try serve(cachesPrefixes: false, waves: true)
        let (cached, cachedCore) = try serve(cachesPrefixes: true, waves: true)
        let (crowded, crowdedCore) = try serve(cachesPrefixes: true, waves: false)
        #expect(plainCore.scheduler.prefixQueryTokens == 0)
        #expect(crowdedCore.scheduler.preemptionCount > 0, "the test must exercise preemption")
        let figures = cachedCore.statistics(stepCount: 0, lastStepSeconds: 0)
        // Each admission queries its tokens: the prompts once, and again (with what they generated) after a preemption.
        #expect(figures.prefixQueryTokens >= prompts.reduce(0) { $0 + $1.count })
        #expect(figures.prefixHitRate > 0.4, "the shared system prompts are found: \(figures.prefixHitRate)")
        for index in prompts.indices {
            let id = RequestID(UInt64(index))
            #expect(cached.tokens(id) == plain.tokens(id), "request \(index)")
            #expect(crowded.tokens(id) == plain.tokens(id), "request \(index), all at once")
            #expect(plain.tokens(id).count == 6 + index % 7)
        }
        #expect(cachedCore.scheduler.allocator.freeCount == 47 && crowdedCore.scheduler.allocator.freeCount == 47)
    }

    /// A prompt prefilled five tokens a step gives the tokens of one prefilled at once (the generator's way,
    /// checked against HF transformers in ModelsTests).
    @Test func chunkedPrefillMatchesWholePrefill() throws {
        let core = try EngineFixture.core(budget: 5)
        let prompt = [5, 17, 300, 42, 7, 9, 1200, 3]
        let collector = OutputCollector()
        core.add(EngineRequest(id: 1, promptTokenIDs: prompt, sampling: .greedy, maxTokens: 10), sink: collector.sink)
        try EngineFixture.runToEnd(core)
        let generator = Generator(model: core.model, backend: core.backend)
        let expected = try generator.generate(prompts: [prompt], sampling: [.greedy], options: GenerationOptions(maxTokens: 10))
        #expect(collector.tokens(1) == expected[0].tokenIDs)
    }

    @Test func stopTokensEndRequestsButNotBeforeMinTokens() throws {
        let core = try EngineFixture.core()
        let prompt = [11, 22, 33]
        let probe = OutputCollector()
        core.add(EngineRequest(id: 1, promptTokenIDs: prompt, sampling: .greedy, maxTokens: 8), sink: probe.sink)
        try EngineFixture.runToEnd(core)
        let free = probe.tokens(1)

        let stopped = OutputCollector()
        core.add(EngineRequest(id: 2, promptTokenIDs: prompt, sampling: .greedy, maxTokens: 8, stopTokenIDs: [free[2]]),
                 sink: stopped.sink)
        try EngineFixture.runToEnd(core)
        let firstStop = free.firstIndex(of: free[2])!
        #expect(stopped.tokens(2) == Array(free[...firstStop]))
        #expect(stopped.finishReason(2) == .stop)

        let held = OutputCollector()
        core.add(EngineRequest(id: 3, promptTokenIDs: prompt, sampling: .greedy, maxTokens: 8, minTokens: 8,
                               stopTokenIDs: [free[0]]), sink: held.sink)
        try EngineFixture.runToEnd(core)
        #expect(held.tokens(3).count == 8 && !held.tokens(3).contains(free[0]))
        #expect(held.finishReason(3) == .length)
    }

    @Test func logprobsMatchTheSampledTokenAndCoverThePrompt() throws {
        let core = try EngineFixture.core(budget: 3)
        let prompt = [100, 200, 300, 400, 500, 600, 700]
        let collector = OutputCollector()
        core.add(EngineRequest(id: 1, promptTokenIDs: prompt, sampling: .greedy, maxTokens: 4, logprobCount: 3,
                               promptLogprobCount: 2), sink: collector.sink)
        try EngineFixture.runToEnd(core)
        let outputs = collector.all(1)
        let promptLogprobs = outputs.flatMap(\.promptLogprobs)
        #expect(promptLogprobs.map(\.tokenID) == Array(prompt.dropFirst()), "one entry per prompt token after the first, across chunks")
        #expect(promptLogprobs.allSatisfy { $0.top.count == 2 && $0.logprob <= 0 })
        let logprobs = outputs.flatMap(\.logprobs)
        #expect(logprobs.map(\.tokenID) == collector.tokens(1))
        for entry in logprobs {
            #expect(entry.top.count == 3)
            #expect(entry.top[0].tokenID == entry.tokenID && entry.top[0].logprob == entry.logprob, "greedy picks the top token")
        }
    }

    @Test func abortFreesBlocksAndBadRequestsGetErrors() throws {
        let core = try EngineFixture.core()
        let collector = OutputCollector()
        core.add(EngineRequest(id: 1, promptTokenIDs: [1, 2, 3], sampling: .greedy, maxTokens: 50), sink: collector.sink)
        _ = try core.step()
        _ = try core.step()
        core.abort(1)
        #expect(collector.finishReason(1) == .abort && collector.tokens(1).count == 2)
        #expect(!core.hasWork && core.scheduler.allocator.freeCount == 63)
        core.add(EngineRequest(id: 2, promptTokenIDs: [5000], sampling: .greedy, maxTokens: 5), sink: collector.sink)
        core.add(EngineRequest(id: 3, promptTokenIDs: [], sampling: .greedy, maxTokens: 5), sink: collector.sink)
        core.add(EngineRequest(id: 4, promptTokenIDs: [Int](repeating: 1, count: 96), sampling: .greedy, maxTokens: 5),
                 sink: collector.sink)
        for id: UInt64 in 2...4 {
            guard case .error = collector.finishReason(RequestID(id)) else { Issue.record("request \(id) was not refused"); continue }
        }
        #expect(!core.hasWork)
    }

    @Test func theLoopServesFromOtherThreadsAndStopsCleanly() async throws {
        let loop = EngineLoop(core: try EngineFixture.core())
        let results = try await withThrowingTaskGroup(of: (Int, [Int]).self) { group in
            for index in 0..<8 {
                group.addTask {
                    let stream = AsyncStream<EngineOutput> { continuation in
                        loop.add(EngineRequest(id: RequestID(UInt64(index)), promptTokenIDs: [index + 1, 7], sampling: .greedy, maxTokens: 5)) {
                            continuation.yield($0)
                            if $0.finishReason != nil { continuation.finish() }
                        }
                    }
                    var tokens: [Int] = []
                    for await output in stream { tokens += output.tokenIDs }
                    return (index, tokens)
                }
            }
            return try await group.reduce(into: [:]) { $0[$1.0] = $1.1 }
        }
        #expect(results.count == 8 && results.values.allSatisfy { $0.count == 5 })
        loop.stop()
        #expect(loop.statistics.runningCount == 0)
    }
}
