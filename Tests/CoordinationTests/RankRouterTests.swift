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

/// A rank that records what it is given and fails when told, as a lost ``RemoteRank`` does:
/// its failure is set before it ends what it held with an error.
final class ScriptedRank: EngineClient, @unchecked Sendable {
    private let lock = NSLock()
    private var sinks: [RequestID: OutputSink] = [:]
    private(set) var added: [EngineRequest] = []
    private var failure: String?

    func add(_ request: EngineRequest, sink: @escaping OutputSink) {
        lock.lock()
        added.append(request)
        sinks[request.id] = sink
        lock.unlock()
    }

    func abort(_ id: RequestID) {}
    var rankStatistics: [EngineStatistics] { [] }
    var failureReason: String? { lock.lock(); defer { lock.unlock() }; return failure }

    func emit(_ output: EngineOutput) {
        lock.lock()
        let sink = sinks[output.requestID]
        lock.unlock()
        sink?(output)
    }

    func fail() {
        lock.lock()
        failure = "connection lost"
        let held = sinks
        sinks = [:]
        lock.unlock()
        for (id, sink) in held { sink(.finished(id, .error("connection lost"))) }
    }
}

/// When the cluster heals, a lost rank's requests move to the survivors as continuations; the
/// client sees its tokens go on and no error.
struct HealingRouterTests {
    /// What a client of the router saw of one request.
    final class Seen: @unchecked Sendable {
        private let lock = NSLock()
        private var stored: (tokens: [Int], finish: FinishReason?) = ([], nil)
        func take(_ output: EngineOutput) {
            lock.lock()
            stored.tokens += output.tokenIDs
            if let reason = output.finishReason { stored.finish = reason }
            lock.unlock()
        }
        var tokens: [Int] { lock.lock(); defer { lock.unlock() }; return stored.tokens }
        var finish: FinishReason? { lock.lock(); defer { lock.unlock() }; return stored.finish }
    }

    static func collect(_ router: RankRouter, _ request: EngineRequest) -> Seen {
        let seen = Seen()
        router.add(request) { seen.take($0) }
        return seen
    }

    @Test func aLostRanksRequestsGoOnElsewhere() {
        let (a, b) = (ScriptedRank(), ScriptedRank())
        let router = RankRouter(ranks: [a, b], heals: true)
        let seen = Self.collect(router, EngineRequest(id: 1, promptTokenIDs: [3, 4], sampling: .greedy, maxTokens: 3))
        #expect(a.added.count == 1 && b.added.isEmpty)
        var token = EngineOutput(requestID: 1)
        token.tokenIDs = [5]
        a.emit(token)
        a.fail()
        #expect(seen.finish == nil, "the client saw the loss")
        guard let continuation = b.added.first else {
            Issue.record("nothing reached the survivor")
            return
        }
        #expect(continuation.promptTokenIDs == [3, 4, 5] && continuation.maxTokens == 2)
        var rest = EngineOutput(requestID: 1)
        rest.tokenIDs = [6, 7]
        rest.finishReason = .length
        b.emit(rest)
        #expect(seen.tokens == [5, 6, 7] && seen.finish == .length)
        #expect(router.inFlight == [0, 0] && router.migrationCount == 1 && router.failureReason == nil)
    }

    @Test func requestsWaitWhenNoRankIsLeftAndGoToTheRecoveredOnes() {
        let (a, b) = (ScriptedRank(), ScriptedRank())
        let router = RankRouter(ranks: [a], heals: true)
        let seen = Self.collect(router, EngineRequest(id: 1, promptTokenIDs: [3], sampling: .greedy, maxTokens: 2))
        a.fail()
        let late = Self.collect(router, EngineRequest(id: 2, promptTokenIDs: [8], sampling: .greedy, maxTokens: 2))
        #expect(seen.finish == nil && late.finish == nil)
        router.recover(keeping: [b])
        #expect(Set(b.added.map(\.id)) == [1, 2])
        router.stopServing("no rank is left")
        #expect(seen.finish == .error("no rank is left") && router.failureReason == "no rank is left")
        let refused = Self.collect(router, EngineRequest(id: 3, promptTokenIDs: [8], sampling: .greedy, maxTokens: 2))
        #expect(refused.finish == .error("no rank is left"))
    }

    @Test func newcomersAmongTheSurvivorsAreKeptApartAndAbortedRequestsEnd() {
        let (a, b, c) = (ScriptedRank(), ScriptedRank(), ScriptedRank())
        let router = RankRouter(ranks: [a], heals: true)
        let aborted = Self.collect(router, EngineRequest(id: 1, promptTokenIDs: [3], sampling: .greedy, maxTokens: 4))
        router.abort(1)
        a.fail()
        // Two survivors the router never had (a scale's newcomers): each keeps its own requests.
        router.recover(keeping: [b, c])
        #expect(aborted.finish == .abort && b.added.isEmpty && c.added.isEmpty, "an aborted request was resent")
        let first = Self.collect(router, EngineRequest(id: 2, promptTokenIDs: [5], sampling: .greedy, maxTokens: 1))
        let second = Self.collect(router, EngineRequest(id: 3, promptTokenIDs: [6], sampling: .greedy, maxTokens: 1))
        #expect(b.added.map(\.id) == [2] && c.added.map(\.id) == [3])
        var done = EngineOutput(requestID: 3)
        done.tokenIDs = [9]
        done.finishReason = .length
        c.emit(done)
        #expect(second.tokens == [9] && first.finish == nil && router.inFlight == [1, 0])
    }
}
