public import Messages
public import Scheduling
import Synchronization

/// Several data-parallel ranks behind one front end: each new request goes to the routable rank
/// with the fewest requests in flight (ties to the lower rank), or with prefix routing to the one
/// that holds the longest cached prefix of its prompt within a margin of that (``PrefixAffinity``),
/// and an abort goes to the rank that holds the request. In-flight counts are the router's own, so
/// they are current when requests arrive in a burst, unlike figures the ranks report after their steps.
///
/// The set of ranks changes while serving (elastic scaling): ranks join, stop being routable, and
/// leave. A request on a rank that leaves migrates: the router aborts it there and, when the rank
/// confirms the abort, sends the prompt plus the tokens generated so far to another rank, asking
/// only for the rest; the client's stream goes on as if nothing happened (greedy tokens are the
/// same, since the new rank recomputes exactly the same context). When the cluster heals itself
/// (`heals`), a rank that is lost ends its requests with an error that the router takes as the
/// same signal: they migrate to the survivors (where they wait while the group heals) and their
/// clients see nothing. Ranks are known by identity, not position, so the set may change under
/// requests in flight.
public final class RankRouter: EngineClient {
    private struct Flight {
        let request: EngineRequest
        let sink: OutputSink
        /// The ``Entry/id`` of the rank that holds it.
        var rank: Int
        var generated: [Int] = []
        /// Prompt log-probability entries the client has, and entries the current rank has sent.
        var promptLogprobsDelivered = 0
        var promptLogprobsFromRank = 0
        var migrating = false
        var abortedByClient = false
    }

    private struct Entry {
        let id: Int
        let client: any EngineClient
        var routable = true
        var inFlight = 0
    }

    private struct State {
        var entries: [Entry]
        var nextID: Int
        /// A flight of rank −1 waits for a rank to take it (none was routable when its own was lost).
        var flights: [RequestID: Flight] = [:]
        var migrations = 0
        /// Why the cluster cannot serve anymore (it could not heal).
        var unservable: String?
        var affinity: PrefixAffinity?

        func index(of id: Int) -> Int? { entries.firstIndex { $0.id == id } }
    }

    private let state: Mutex<State>
    private let heals: Bool

    private let affinityBlockSize: Int?

    /// - Parameters:
    ///   - heals: requests of a lost rank migrate rather than fail (the cluster heals itself).
    ///   - affinity: route by cached prefix (the ranks cache prefixes in blocks of its block size).
    public init(ranks: [any EngineClient], heals: Bool = false, affinity: PrefixAffinity? = nil) {
        precondition(!ranks.isEmpty, "a router needs at least one rank")
        state = Mutex(State(entries: ranks.enumerated().map { Entry(id: $0.offset, client: $0.element) }, nextID: ranks.count,
                            affinity: affinity))
        self.heals = heals
        affinityBlockSize = affinity?.blockSize
    }

    public var ranks: [any EngineClient] { state.withLock { $0.entries.map(\.client) } }

    public func add(_ request: EngineRequest, sink: @escaping OutputSink) {
        // Hashing and the ranks' own figures are read outside the router's lock.
        var hashes: [UInt64] = [], capacities: [(Int, Int)] = []
        if let blockSize = affinityBlockSize {
            hashes = PrefixAffinity.hashes(of: request.promptTokenIDs, blockSize: blockSize)
            let clients = state.withLock { $0.entries.map { ($0.id, $0.client) } }
            capacities = clients.map { ($0.0, $0.1.rankStatistics.first?.blockCount ?? 0) }
        }
        let target = state.withLock { state -> (Int, any EngineClient)? in
            if state.unservable != nil { return nil }
            var index = Self.leastLoaded(state)
            // Through optional chaining, so that the memories are changed in place, not copied.
            for (rank, blocks) in capacities { state.affinity?.setCapacity(blocks, of: rank) }
            let candidates = state.entries.filter(\.routable).map { (rank: $0.id, load: $0.inFlight) }
            if !candidates.isEmpty, let rank = state.affinity?.route(hashes, among: candidates), let chosen = state.index(of: rank) {
                index = chosen
            }
            state.entries[index].inFlight += 1
            state.flights[request.id] = Flight(request: request, sink: sink, rank: state.entries[index].id)
            return (state.entries[index].id, state.entries[index].client)
        }
        guard let (rank, client) = target else {
            sink(.finished(request.id, .error(failureReason ?? "the cluster cannot serve")))
            return
        }
        client.add(request) { [self] in deliver($0, from: rank) }
    }

    public func abort(_ id: RequestID) {
        let client = state.withLock { state -> (any EngineClient)? in
            guard var flight = state.flights[id] else { return nil }
            flight.abortedByClient = true
            state.flights[id] = flight
            return state.index(of: flight.rank).map { state.entries[$0].client }
        }
        client?.abort(id)
    }

    // MARK: Elastic changes

    /// Ranks from `count` on get no new request (requests they hold go on until migrated).
    public func routeOnlyTo(first count: Int) {
        state.withLock { state in
            for index in state.entries.indices { state.entries[index].routable = index < count }
        }
    }

    /// Appends ranks (the newcomers of a scale-up, numbered on from the current ones); routable at once.
    public func append(_ newcomers: [any EngineClient]) {
        state.withLock { state in
            for client in newcomers {
                state.entries.append(Entry(id: state.nextID, client: client))
                state.nextID += 1
            }
        }
    }

    /// Drops the ranks from `count` on (after a scale-down's commit); they hold no request by then.
    public func truncate(to count: Int) {
        state.withLock { state in
            guard count < state.entries.count else { return }
            state.entries.removeLast(state.entries.count - count)
            state.affinity?.keep(only: Set(state.entries.map(\.id)))
        }
    }

    /// Moves every request held by ranks from `count` on to the others (see the type's comment).
    public func migrate(from count: Int) {
        let aborts = state.withLock { state -> [(any EngineClient, RequestID)] in
            let leaving = Dictionary(uniqueKeysWithValues: state.entries.dropFirst(count).map { ($0.id, $0.client) })
            var aborts: [(any EngineClient, RequestID)] = []
            for (id, var flight) in state.flights where !flight.migrating {
                guard let client = leaving[flight.rank] else { continue }
                flight.migrating = true
                state.flights[id] = flight
                aborts.append((client, id))
            }
            return aborts
        }
        for (client, id) in aborts { client.abort(id) }
    }

    /// The ranks after a recovery: `survivors`, in their new order (the same clients as before).
    /// Requests of ranks left out go to the survivors, with those that waited for a rank.
    public func recover(keeping survivors: [any EngineClient]) {
        let (resends, ended) = state.withLock { state -> ([(any EngineClient, EngineRequest, Int)], [(RequestID, OutputSink)]) in
            var kept: [Entry] = []
            for client in survivors {
                if let known = state.entries.first(where: { ($0.client as AnyObject) === (client as AnyObject) }) {
                    kept.append(known)
                } else {
                    kept.append(Entry(id: state.nextID, client: client))
                    state.nextID += 1
                }
            }
            let keptIDs = Set(kept.map(\.id))
            state.affinity?.keep(only: keptIDs)
            state.entries = kept.map { entry in
                var entry = entry
                entry.routable = true
                return entry
            }
            let moving = state.flights.filter { !keptIDs.contains($0.value.rank) }
            // A request its client aborted ends here; only the others go on elsewhere.
            let ended = moving.filter(\.value.abortedByClient).map { ($0.key, $0.value.sink) }
            for (id, _) in ended { state.flights[id] = nil }
            return (moving.filter { !$0.value.abortedByClient }.keys.compactMap { Self.moveToAnotherRank($0, &state) }, ended)
        }
        for (id, sink) in ended { sink(.finished(id, .abort)) }
        for (client, request, target) in resends { send(request, to: client, target: target) }
    }

    /// The cluster cannot serve (it could not heal): every request in flight ends with `reason`,
    /// and so does every later one, which ``failureReason`` also says.
    public func stopServing(_ reason: String) {
        let ended = state.withLock { state -> [(RequestID, OutputSink)] in
            state.unservable = reason
            defer { state.flights.removeAll() }
            return state.flights.map { ($0.key, $0.value.sink) }
        }
        for (id, sink) in ended { sink(.finished(id, .error(reason))) }
    }

    /// Requests each rank holds now, as the router counts them.
    public var inFlight: [Int] { state.withLock { $0.entries.map(\.inFlight) } }

    /// Requests moved to another rank so far.
    public var migrationCount: Int { state.withLock { $0.migrations } }

    public var rankStatistics: [EngineStatistics] { ranks.flatMap(\.rankStatistics) }

    public var failureReason: String? {
        if heals { return state.withLock { $0.unservable } }
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
            let index = state.index(of: rank)
            // Taken out and put back, so that appending to its tokens does not copy them.
            var flight = state.flights.removeValue(forKey: output.requestID)!
            let abandonedByRank = flight.migrating && output.finishReason == .abort
            var lostWithRank = false
            if heals, case .error? = output.finishReason, let index, state.entries[index].client.failureReason != nil {
                lostWithRank = true
                state.entries[index].routable = false
            }
            if (abandonedByRank || lostWithRank) && !flight.abortedByClient {
                // The rank let the request go (it leaves, or it was lost): the rest runs on another rank.
                state.flights[output.requestID] = flight
                guard let (client, request, target) = Self.moveToAnotherRank(output.requestID, &state) else { return .drop }
                return .resend(client, request, target)
            }
            var forwarded = output
            // The client that aborted a request hears that it ended so, not that its rank was lost.
            if lostWithRank { forwarded.finishReason = .abort }
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
                if let index { state.entries[index].inFlight -= 1 }
                state.flights[output.requestID] = nil
            } else {
                state.flights[output.requestID] = flight
            }
            return .forward(flight.sink, forwarded)
        }
        switch next {
        case .drop: return
        case .forward(let sink, let output): sink(output)
        case .resend(let client, let request, let target): send(request, to: client, target: target)
        }
    }

    private func send(_ request: EngineRequest, to client: any EngineClient, target: Int) {
        if request.maxTokens <= 0 {
            deliver(.finished(request.id, .length), from: target)
            return
        }
        client.add(request) { [self] in deliver($0, from: target) }
    }

    /// Takes request `id` off its rank and onto the least loaded routable one, as a continuation
    /// (the prompt plus what was generated); `nil` when no rank is routable (it waits, stranded).
    private static func moveToAnotherRank(_ id: RequestID, _ state: inout State) -> (any EngineClient, EngineRequest, Int)? {
        guard var flight = state.flights[id] else { return nil }
        if let old = state.index(of: flight.rank) { state.entries[old].inFlight -= 1 }
        guard state.entries.contains(where: \.routable) else {
            flight.rank = -1
            state.flights[id] = flight
            return nil
        }
        let target = leastLoaded(state)
        state.entries[target].inFlight += 1
        let original = flight.request
        let made = flight.generated.count
        flight.rank = state.entries[target].id
        flight.migrating = false
        flight.promptLogprobsFromRank = 0
        state.flights[id] = flight
        state.migrations += 1
        let continuation = EngineRequest(
            id: original.id, promptTokenIDs: original.promptTokenIDs + flight.generated, sampling: original.sampling,
            maxTokens: original.maxTokens - made, minTokens: max(0, original.minTokens - made),
            stopTokenIDs: original.stopTokenIDs, logprobCount: original.logprobCount,
            promptLogprobCount: original.promptLogprobCount, keepsLogits: original.keepsLogits)
        return (state.entries[target].client, continuation, flight.rank)
    }

    private static func leastLoaded(_ state: State) -> Int {
        let entries = state.entries
        return entries.indices.filter { entries[$0].routable }.min { entries[$0].inFlight < entries[$1].inFlight }
            ?? entries.indices.min { entries[$0].inFlight < entries[$1].inFlight }!
    }
}
