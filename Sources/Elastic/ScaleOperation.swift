/// One reconfiguration from `from` ranks to `to` ranks, as the front end conducts it: a pure
/// state machine (events in, actions out) that ``ElasticController`` drives and tests drive alone.
///
/// Scale up: newcomers start and prepare (build from peers), the current ranks prepare (standby
/// group, weights sent) while serving; when all `to` ranks are prepared, all commit; when all have
/// switched, the newcomers become routable. A failure or timeout while preparing rolls back:
/// abandon is sent, newcomers are stopped, serving goes on at `from`.
///
/// Scale down: the leaving ranks stop being routable and their requests migrate; every rank
/// prepares (experts move off the leaving ranks, the staying ones form the standby group); when
/// all are prepared and the leaving ranks hold no request, all commit; when all have switched
/// (leaving ones then exit), the router forgets the leaving ranks.
public struct ScaleOperation: Sendable {
    public enum Phase: String, Sendable {
        case preparing, committing, done, failed
    }

    public enum Event: Sendable, Equatable {
        case prepared(rank: RankID)
        case switched(rank: RankID)
        /// A rank could not prepare, or its process or connection ended.
        case failed(rank: RankID, reason: String)
        /// The leaving ranks hold no request anymore.
        case drained
        case timedOut
    }

    public enum Action: Sendable, Equatable {
        case startRanks(Range<RankID>)
        case routeOnlyTo(first: Int)
        case migrate(from: Int)
        case sendPrepare(to: Range<RankID>)
        case sendCommit(to: Range<RankID>)
        case sendAbandon(to: Range<RankID>)
        /// Stop the processes of these ranks (newcomers of a failed scale-up).
        case stopRanks(Range<RankID>)
        /// These ranks leave: their connections closing is expected.
        case retire(Range<RankID>)
        /// The router's ranks become 0..<count, all routable.
        case routeTo(count: Int)
        case finish
        case fail(String)
    }

    public let from: Int
    public let to: Int
    public private(set) var phase = Phase.preparing
    private var prepared = Set<RankID>()
    private var switched = Set<RankID>()
    private var drained: Bool

    /// The operation and the actions that start it.
    public static func start(from: Int, to: Int) -> (ScaleOperation, [Action]) {
        precondition(from >= 1 && to >= 1 && from != to, "a reconfiguration changes the size")
        let operation = ScaleOperation(from: from, to: to, drained: to > from)
        if to > from { return (operation, [.startRanks(Range(ranks: from, to)), .sendPrepare(to: Range(ranks: 0, from))]) }
        return (operation, [.routeOnlyTo(first: to), .migrate(from: to), .sendPrepare(to: Range(ranks: 0, from))])
    }

    private init(from: Int, to: Int, drained: Bool) {
        self.from = from
        self.to = to
        self.drained = drained
    }

    /// Ranks that take part: all old and new ones.
    private var members: Int { max(from, to) }

    public mutating func handle(_ event: Event) -> [Action] {
        switch (phase, event) {
        case (.preparing, .prepared(let rank)):
            prepared.insert(rank)
            return commitIfReady()
        case (.preparing, .drained):
            drained = true
            return commitIfReady()
        case (.preparing, .failed(_, let reason)):
            return rollBack(reason)
        case (.preparing, .timedOut):
            let missing = Range(ranks: 0, members).filter { !prepared.contains($0) }
            return rollBack("ranks \(missing) did not prepare in time" + (drained ? "" : "; requests still on the leaving ranks"))
        case (.committing, .switched(let rank)):
            switched.insert(rank)
            return finishIfSwitched()
        case (.committing, .failed(let rank, _)) where rank.index >= to:
            // A leaving rank may close its connection right after switching; one lost before is
            // gone as it was to go: its requests and experts had moved, and the others switch without it.
            switched.insert(rank)
            return finishIfSwitched()
        case (.committing, .failed(let rank, let reason)):
            return fail("rank \(rank) failed during the commit: \(reason)")
        case (.committing, .timedOut):
            let missing = Range(ranks: 0, members).filter { !switched.contains($0) }
            return fail("ranks \(missing) did not switch in time")
        default:
            return []
        }
    }

    private mutating func finishIfSwitched() -> [Action] {
        guard switched.count == members else { return [] }
        phase = .done
        return [.routeTo(count: to), .finish]
    }

    private mutating func commitIfReady() -> [Action] {
        guard prepared.count == members && drained else { return [] }
        phase = .committing
        return (to < from ? [.retire(Range(ranks: to, from))] : []) + [.sendCommit(to: Range(ranks: 0, members))]
    }

    private mutating func rollBack(_ reason: String) -> [Action] {
        phase = .failed
        if to > from { return [.sendAbandon(to: Range(ranks: 0, to)), .stopRanks(Range(ranks: from, to)), .fail(reason)] }
        return [.sendAbandon(to: Range(ranks: 0, from)), .routeTo(count: from), .fail(reason)]
    }

    private mutating func fail(_ reason: String) -> [Action] {
        phase = .failed
        return [.fail(reason)]
    }
}
