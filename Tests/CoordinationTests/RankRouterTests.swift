import Coordination
import Compute
import ComputeCPU
import Engine
import Foundation
import Messages
import Models
import Scheduling
import Synchronization
import Testing

/// Data-parallel ranks in one process (no expert parallelism): the router spreads a burst over
/// every rank, routes aborts to the owner, and every request gets the tokens it gets on one rank.
struct RankRouterTests {
    static let model = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/qwen3_moe").path

    static func loop() throws -> EngineLoop {
        let backend = CPUBackend()
        let model = try CausalLM.load(folder: Self.model, format: .auto, on: backend)
        let cache = try KVCache(model: model, blockSize: 16, blockCount: 65, backend: backend)
        return EngineLoop(core: try EngineCore(model: model, backend: backend, cache: cache, configuration: SchedulerConfiguration(
            maxBatchedTokens: 256, maxSequences: 32, maxModelLength: 128)))
    }

    @Test func burstsReachEveryRankAndAbortsReachTheirOwner() async throws {
        let loops = try (0..<3).map { _ in try Self.loop() }
        defer { for loop in loops { loop.stop() } }
        let router = RankRouter(ranks: loops)

        // A long request, aborted through the router at once: the abort must reach the rank that holds it.
        let long = EngineRequest(id: 1000, promptTokenIDs: [9, 9], sampling: .greedy, maxTokens: 120, minTokens: 120)
        let aborted = Mutex<(reason: FinishReason?, tokens: Int)>((nil, 0))
        router.add(long) { output in
            aborted.withLock {
                $0.tokens += output.tokenIDs.count
                if let reason = output.finishReason { $0.reason = reason }
            }
        }
        router.abort(1000)

        let results = await withTaskGroup(of: (Int, [Int]).self) { group in
            for index in 0..<30 {
                group.addTask {
                    let stream = AsyncStream<EngineOutput> { continuation in
                        router.add(EngineRequest(id: RequestID(UInt64(index)), promptTokenIDs: [index + 1, 7, 3], sampling: .greedy,
                                                 maxTokens: 8)) {
                            continuation.yield($0)
                            if $0.finishReason != nil { continuation.finish() }
                        }
                    }
                    var tokens: [Int] = []
                    for await output in stream { tokens += output.tokenIDs }
                    return (index, tokens)
                }
            }
            return await group.reduce(into: [Int: [Int]]()) { $0[$1.0] = $1.1 }
        }
        #expect(results.count == 30 && results.values.allSatisfy { $0.count == 8 })
        let deadline = Date().addingTimeInterval(20)
        while aborted.withLock({ $0.reason }) == nil && Date() < deadline { try await Task.sleep(for: .milliseconds(20)) }
        #expect(aborted.withLock { $0.reason } == .abort && aborted.withLock { $0.tokens } < 120)
        #expect(router.inFlight == [0, 0, 0])
        let steps = router.rankStatistics.map(\.stepCount)
        #expect(steps.count == 3 && steps.allSatisfy { $0 > 0 }, "every rank served requests: \(steps)")

        // The same requests on one rank alone give the same tokens.
        let alone = try Self.loop()
        defer { alone.stop() }
        for index in [0, 13, 29] {
            let stream = AsyncStream<EngineOutput> { continuation in
                alone.add(EngineRequest(id: RequestID(UInt64(index)), promptTokenIDs: [index + 1, 7, 3], sampling: .greedy, maxTokens: 8)) {
                    continuation.yield($0)
                    if $0.finishReason != nil { continuation.finish() }
                }
            }
            var tokens: [Int] = []
            for await output in stream { tokens += output.tokenIDs }
            #expect(tokens == results[index], "request \(index)")
        }
    }
}
