import Compute
public import Elastic
import Foundation
public import Messages
import Synchronization
public import Transport

/// The front end's half of a cluster: the rendezvous store ranks join through (guarded by the
/// join token), the listener their connections come to, and the wake-ups that start idle ranks.
///
/// Threads: one reads every connection's hello at the rank listener, at all times (so that a
/// connection that never says hello is closed even while no rank is expected), and keeps the
/// authenticated ones by rank in `arrivals` until ``accept(ranks:deadline:stillStarting:)``
/// or ``takeArrivals(_:into:waiting:)`` takes them (one taker at a time).
public final class Coordinator: Sendable {
    public let store: RendezvousStore
    public let token: String
    /// The address the store and the rank listener are on.
    public let host: String
    public let configuration: RankConfiguration
    /// How long a rank may leave heartbeats unanswered before it counts as lost (`nil`: no heartbeats).
    public let heartbeatTimeout: Duration?
    private let gate: HelloGate
    private let woken = Mutex(0)
    private let ranksBox = Mutex<[RemoteRank]>([])
    private let reportHandler = Mutex<(@Sendable (RankID, ReconfigurationReport) -> Void)?>(nil)
    private let arrivals = Mutex<(sockets: [RankID: TCPSocket], isClosed: Bool)>(([:], false))
    /// Signalled after every arrival; a taker that finds nothing new waits again or returns.
    private let arrived = DispatchSemaphore(value: 0)

    /// Starts the store on `host:storePort` (0: any) and publishes `configuration` (its `frontEnd`
    /// is filled in with this coordinator's listener).
    public init(host: String, storePort: Int, token: String, configuration: RankConfiguration,
                heartbeatTimeout: Duration? = nil) throws {
        self.heartbeatTimeout = heartbeatTimeout
        store = try RendezvousStore(host: host, port: storePort, token: token)
        gate = HelloGate(listener: try TCPSocket.listen(host: host, port: 0))
        self.token = token
        self.host = host
        var published = configuration
        published.frontEnd = "\(host):\(gate.port)"
        self.configuration = published
        let client = try StoreClient(host: host, port: store.port, token: token)
        defer { client.close() }
        try client.set(RankConfiguration.storeKey, Array(try JSONEncoder().encode(published)))
        let thread = Thread { [self] in admitRanks() }
        thread.name = "flexpert-coordinator-accept"
        thread.start()
    }

    /// The most authenticated connections kept before a rank is expected; more than any scale-up brings.
    private static let maxArrivals = 1024

    private func admitRanks() {
        while true {
            if arrivals.withLock({ $0.isClosed }) { return }
            guard let (socket, frame) = gate.next(deadline: .now + .seconds(1)) else { continue }
            guard case .hello(let rank, let presented)? = try? EngineMessage(decoding: frame), JoinToken.matches(presented, token),
                  rank.index >= 0 else {
                socket.close()
                continue
            }
            // A second connection for the same rank replaces the first (a rank that reconnected).
            let (isKept, replaced) = arrivals.withLock { arrivals -> (Bool, TCPSocket?) in
                guard !arrivals.isClosed && arrivals.sockets.count < Self.maxArrivals else { return (false, nil) }
                return (true, arrivals.sockets.updateValue(socket, forKey: rank))
            }
            guard isKept else {
                socket.close()
                continue
            }
            arrived.signal()
            replaced?.close()
        }
    }

    public var ranks: [RemoteRank] { ranksBox.withLock { $0 } }

    /// The ranks that get wake-ups: the cluster's current members.
    public func setRanks(_ ranks: [RemoteRank]) { ranksBox.withLock { $0 = ranks } }

    /// Where every rank's reconfiguration reports go; a rank whose connection ends reports `lost`.
    public func onReport(_ handler: @escaping @Sendable (RankID, ReconfigurationReport) -> Void) {
        reportHandler.withLock { $0 = handler }
    }

    /// Accepts one connection per rank until all `configuration.size` ranks said hello with the
    /// right token; throws at the deadline or if `stillStarting` says the ranks cannot come anymore.
    public func waitForRanks(deadline: ContinuousClock.Instant, stillStarting: () -> String?) throws -> [RemoteRank] {
        let joined = try accept(ranks: Range(ranks: 0, configuration.size), deadline: deadline, stillStarting: stillStarting)
        ranksBox.withLock { $0 = joined }
        return joined
    }

    /// Takes the connections of ranks `wanted`, in rank order, as their hellos arrive.
    public func accept(ranks wanted: Range<RankID>, deadline: ContinuousClock.Instant,
                       stillStarting: () -> String?) throws -> [RemoteRank] {
        var sockets = [TCPSocket?](repeating: nil, count: wanted.count)
        while sockets.contains(where: { $0 == nil }) {
            if let problem = stillStarting() { throw TransportError.refused(problem) }
            guard ContinuousClock.now < deadline else {
                let missing = sockets.indices.filter { sockets[$0] == nil }.map { wanted.lowerBound.advanced(by: $0) }
                throw TransportError.timeout("waiting for ranks \(missing) to join")
            }
            takeArrivals(wanted, into: &sockets, waiting: .milliseconds(200))
        }
        return remoteRanks(wanted, sockets.map { $0! })
    }

    /// Moves into `sockets` (index 0: rank `wanted.lowerBound`) the connections of the ranks still
    /// missing there that have said hello, waiting up to `waiting` for one when none has.
    public func takeArrivals(_ wanted: Range<RankID>, into sockets: inout [TCPSocket?], waiting: Duration = .zero) {
        let deadline = DispatchTime.now() + waiting.seconds
        while true {
            let found = arrivals.withLock { arrivals in
                wanted.compactMap { rank -> (RankID, TCPSocket)? in
                    guard sockets[wanted.lowerBound.distance(to: rank)] == nil,
                          let socket = arrivals.sockets.removeValue(forKey: rank) else { return nil }
                    return (rank, socket)
                }
            }
            var took = false
            for (rank, socket) in found {
                // Left over from an attempt that was abandoned: its rank is gone.
                if socket.peerHasClosed {
                    socket.close()
                } else {
                    sockets[wanted.lowerBound.distance(to: rank)] = socket
                    took = true
                }
            }
            guard !took && waiting > .zero && sockets.contains(where: { $0 == nil }),
                  arrived.wait(timeout: deadline) == .success else { return }
        }
    }

    /// The front end's side of ranks `wanted`'s connections (`sockets`, in rank order).
    public func remoteRanks(_ wanted: Range<RankID>, _ sockets: [TCPSocket]) -> [RemoteRank] {
        zip(wanted, sockets).map { rank, socket in
            RemoteRank(rank: rank, connection: socket, heartbeatTimeout: heartbeatTimeout,
                       onNeedWake: { [weak self] round in self?.wake(round: round) },
                       onReport: { [weak self] rank, report in self?.reportHandler.withLock { $0 }?(rank, report) })
        }
    }

    /// The latest round the ranks were woken for (a recovered group starts past it).
    public var latestWake: Int { woken.withLock { $0 } }

    /// Starts every rank on `round`, once per round however many ranks ask.
    private func wake(round: Int) {
        let isNew = woken.withLock { latest in
            guard round > latest else { return false }
            latest = round
            return true
        }
        guard isNew else { return }
        for rank in ranks { rank.wake(round: round) }
    }

    public func close() {
        for rank in ranks { rank.close() }
        let waiting = arrivals.withLock { arrivals in
            arrivals.isClosed = true
            defer { arrivals.sockets.removeAll() }
            return Array(arrivals.sockets.values)
        }
        for socket in waiting { socket.close() }
        gate.close()
        store.close()
    }
}
