public import Messages
import Synchronization

/// Several data-parallel ranks behind one front end: each new request goes to the routable rank
/// with the fewest requests in flight (ties to the lower rank), and an abort goes to the rank that
/// holds the request. In-flight counts are the router's own, so they are current when requests
/// arrive in a burst, unlike figures the ranks report after their steps.
///
/// The set of ranks changes while serving (elastic scaling): ranks join, stop being routable, and
/// leave. A request on a rank that leaves migrates: the router aborts it there and, when the rank
/// confirms the abort, sends the prompt plus the tokens generated so far to another rank, asking
/// only for the rest; the client's stream goes on as if nothing happened (greedy tokens are the
/// same, since the new rank recomputes exactly the same context).
public final class RankRouter: EngineClient {
    private struct Flight {
        let request: EngineRequest
        let sink: OutputSink
        var rank: Int
        var generated: [Int] = []
        /// Prompt log-probability entries the client has, and entries the current rank has sent.
        var promptLogprobsDelivered = 0
        var promptLogprobsFromRank = 0
        var migrating = false
        var abortedByClient = false
    }

    private struct State {
        var ranks: [any EngineClient]
        var routable: [Bool]
        var inFlight: [Int]
        var flights: [RequestID: Flight] = [:]
        var migrations = 0
    }

    private let state: Mutex<State>

    public init(ranks: [any EngineClient]) {
        precondition(!ranks.isEmpty, "a router needs at least one rank")
        state = Mutex(State(ranks: ranks, routable: ranks.map { _ in true }, inFlight: ranks.map { _ in 0 }))
    }

    public var ranks: [any EngineClient] { state.withLock { $0.ranks } }

    public func add(_ request: EngineRequest, sink: @escaping OutputSink) {
        let (rank, client) = state.withLock { state in
            let rank = Self.leastLoaded(state)
            state.inFlight[rank] += 1
            state.flights[request.id] = Flight(request: request, sink: sink, rank: rank)
            return (rank, state.ranks[rank])
        }
        client.add(request) { [self] in deliver($0, from: rank) }
    }

    public func abort(_ id: RequestID) {
        let client = state.withLock { state -> (any EngineClient)? in
            guard var flight = state.flights[id] else { return nil }
            flight.abortedByClient = true
            state.flights[id] = flight
            return state.ranks[flight.rank]
        }
        client?.abort(id)
    }

    // MARK: Elastic changes

    /// Ranks from `count` on get no new request (requests they hold go on until migrated).
    public func routeOnlyTo(first count: Int) {
        state.withLock { state in
            for index in state.routable.indices { state.routable[index] = index < count }
        }
    }

    /// Appends ranks (the newcomers of a scale-up, numbered on from the current ones); routable at once.
    public func append(_ newcomers: [any EngineClient]) {
        state.withLock { state in
            state.ranks += newcomers
            state.routable += newcomers.map { _ in true }
            state.inFlight += newcomers.map { _ in 0 }
        }
    }

    /// Drops the ranks from `count` on (after a scale-down's commit); they hold no request by then.
    public func truncate(to count: Int) {
        state.withLock { state in
            guard count < state.ranks.count else { return }
            state.ranks.removeLast(state.ranks.count - count)
            state.routable.removeLast(state.routable.count - count)
            state.inFlight.removeLast(state.inFlight.count - count)
        }
    }

    /// Moves every request held by ranks from `count` on to the others (see the type's comment).
    public func migrate(from count: Int) {
        let aborts = state.withLock { state -> [(any EngineClient, RequestID)] in
            var aborts: [(any EngineClient, RequestID)] = []
            for (id, var flight) in state.flights where flight.rank >= count && !flight.migrating {
                flight.migrating = true
                state.flights[id] = flight
                aborts.append((state.ranks[flight.rank], id))
            }
            return aborts
        }
        for (client, id) in aborts { client.abort(id) }
    }

    /// Requests each rank holds now, as the router counts them.
    public var inFlight: [Int] { state.withLock { $0.inFlight } }

    /// Requests moved to another rank so far.
    public var migrationCount: Int { state.withLock { $0.migrations } }

    public var rankStatistics: [EngineStatistics] { ranks.flatMap(\.rankStatistics) }

    public var failureReason: String? {
        for (index, rank) in ranks.enumerated() {
            if let reason = rank.failureReason { return "rank \(index): \(reason)" }
        }
        return nil
    }

    // MARK: Outputs

    private func deliver(_ output: EngineOutput, from rank: Int) {
        enum Next {
            case drop
            case forward(OutputSink, EngineOutput)
            case resend(any EngineClient, EngineRequest, Int)
        }
        let next = state.withLock { state -> Next in
            guard state.flights[output.requestID]?.rank == rank else { return .drop }
            // Taken out and put back, so that appending to its tokens does not copy them.
            var flight = state.flights.removeValue(forKey: output.requestID)!
            if flight.migrating && output.finishReason == .abort && !flight.abortedByClient {
                // The leaving rank let the request go: the rest runs on another rank.
                state.inFlight[rank] -= 1
                let target = Self.leastLoaded(state)
                state.inFlight[target] += 1
                let original = flight.request
                let made = flight.generated.count
                flight.rank = target
                flight.migrating = false
                flight.promptLogprobsFromRank = 0
                state.flights[output.requestID] = flight
                state.migrations += 1
                let continuation = EngineRequest(
                    id: original.id, promptTokenIDs: original.promptTokenIDs + flight.generated, sampling: original.sampling,
                    maxTokens: original.maxTokens - made, minTokens: max(0, original.minTokens - made),
                    stopTokenIDs: original.stopTokenIDs, logprobCount: original.logprobCount,
                    promptLogprobCount: original.promptLogprobCount, keepsLogits: original.keepsLogits)
                return .resend(state.ranks[target], continuation, target)
            }
            var forwarded = output
            flight.generated += output.tokenIDs
            if !output.promptLogprobs.isEmpty {
                // Only the original prompt's entries the client does not have yet.
                let promptEntries = max(0, flight.request.promptTokenIDs.count - 1)
                let first = flight.promptLogprobsFromRank
                let wanted = max(first, flight.promptLogprobsDelivered)..<min(first + output.promptLogprobs.count, promptEntries)
                forwarded.promptLogprobs = wanted.isEmpty ? [] : Array(output.promptLogprobs[(wanted.lowerBound - first)..<(wanted.upperBound - first)])
                flight.promptLogprobsFromRank += output.promptLogprobs.count
                flight.promptLogprobsDelivered = max(flight.promptLogprobsDelivered, wanted.isEmpty ? 0 : wanted.upperBound)
            }
            if output.finishReason != nil {
                state.inFlight[rank] -= 1
                state.flights[output.requestID] = nil
            } else {
                state.flights[output.requestID] = flight
            }
            return .forward(flight.sink, forwarded)
        }
        switch next {
        case .drop: return
        case .forward(let sink, let output): sink(output)
        case .resend(let client, let request, let target):
            if request.maxTokens <= 0 {
                deliver(.finished(request.id, .length), from: target)
                return
            }
            client.add(request) { [self] in deliver($0, from: target) }
        }
    }

    private static func leastLoaded(_ state: State) -> Int {
        state.inFlight.indices.filter { state.routable[$0] }.min { state.inFlight[$0] < state.inFlight[$1] }
            ?? state.inFlight.indices.min { state.inFlight[$0] < state.inFlight[$1] }!
    }
}
