public import Engine
import Synchronization

/// Several data-parallel ranks behind one front end: each new request goes to the rank with the
/// fewest requests in flight (ties to the lower rank), and an abort goes to the rank that holds
/// the request. In-flight counts are the router's own, so they are current when requests arrive
/// in a burst, unlike figures the ranks report after their steps.
public final class RankRouter: EngineClient {
    private struct State {
        var inFlight: [Int]
        var owner: [UInt64: Int] = [:]
    }

    public let ranks: [any EngineClient]
    private let state: Mutex<State>

    public init(ranks: [any EngineClient]) {
        precondition(!ranks.isEmpty, "a router needs at least one rank")
        self.ranks = ranks
        state = Mutex(State(inFlight: [Int](repeating: 0, count: ranks.count)))
    }

    public func add(_ request: EngineRequest, sink: @escaping OutputSink) {
        let rank = state.withLock { state in
            let chosen = state.inFlight.indices.min { state.inFlight[$0] < state.inFlight[$1] }!
            state.inFlight[chosen] += 1
            state.owner[request.id] = chosen
            return chosen
        }
        ranks[rank].add(request) { [self] output in
            if output.finishReason != nil {
                state.withLock {
                    $0.inFlight[rank] -= 1
                    $0.owner[output.requestID] = nil
                }
            }
            sink(output)
        }
    }

    public func abort(_ id: UInt64) {
        guard let rank = state.withLock({ $0.owner[id] }) else { return }
        ranks[rank].abort(id)
    }

    /// Requests each rank holds now, as the router counts them.
    public var inFlight: [Int] { state.withLock { $0.inFlight } }

    public var rankStatistics: [EngineStatistics] { ranks.flatMap(\.rankStatistics) }

    public var failureReason: String? {
        for (index, rank) in ranks.enumerated() {
            if let reason = rank.failureReason { return "rank \(index): \(reason)" }
        }
        return nil
    }
}
