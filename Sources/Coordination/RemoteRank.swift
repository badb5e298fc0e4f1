import Compute
public import Elastic
import Foundation
public import Messages
import Synchronization
public import Transport

/// The front end's side of one engine rank's connection: an ``EngineClient`` that sends requests
/// and aborts as messages and hands the outputs that come back to their requests' sinks.
///
/// Threads: a reader thread owns receiving; a writer thread owns sending, from a queue that
/// callers (HTTP handler tasks among them) only append to, so no caller blocks on the socket.
/// When the connection drops (the rank's process died), every request it held ends with an error
/// at once and ``failureReason`` is set. With a heartbeat timeout the writer also sends a
/// heartbeat four times per timeout, and a rank that answered none for that long (its process
/// stopped, or cut off) is failed the same way and its connection closed.
public final class RemoteRank: EngineClient, Sendable {
    /// The rank's index in its group (a recovery renumbers the survivors).
    public var rank: RankID { state.withLock { $0.rank } }
    private let connection: TCPSocket
    private let outgoing = Mutex<(messages: [EngineMessage], isClosed: Bool)>(([], false))
    /// Signalled after every queued message and at the close; the writer waits for it.
    private let queued = DispatchSemaphore(value: 0)
    private struct State {
        var rank: RankID
        var sinks: [RequestID: OutputSink] = [:]
        var statistics = EngineStatistics(blockCount: 0)
        var failure: String?
        /// The rank left the cluster by a reconfiguration: its connection closing is no failure.
        var retired = false
        var lastHeartbeatAnswer = ContinuousClock.now
    }
    private let state: Mutex<State>
    /// Called on the reader thread when the rank asks for a wake-up of `round`.
    private let onNeedWake: @Sendable (Int) -> Void

    /// Called on the reader thread with the rank's reconfiguration reports, and with `.lost`
    /// when its connection ends.
    private let onReport: @Sendable (RankID, ReconfigurationReport) -> Void
    private let heartbeatTimeout: Duration?

    public init(rank: RankID, connection: TCPSocket, heartbeatTimeout: Duration? = nil, onNeedWake: @escaping @Sendable (Int) -> Void,
                onReport: @escaping @Sendable (RankID, ReconfigurationReport) -> Void = { _, _ in }) {
        state = Mutex(State(rank: rank))
        self.connection = connection
        self.heartbeatTimeout = heartbeatTimeout
        self.onNeedWake = onNeedWake
        self.onReport = onReport
        let reader = Thread { [self] in readFrames() }
        reader.name = "flexpert-rank-\(rank.index)-reader"
        reader.start()
        let writer = Thread { [self] in writeFrames() }
        writer.name = "flexpert-rank-\(rank.index)-writer"
        writer.start()
    }

    public func add(_ request: EngineRequest, sink: @escaping OutputSink) {
        let failure = state.withLock { state -> String? in
            if state.failure == nil { state.sinks[request.id] = sink }
            return state.failure
        }
        if let failure {
            sink(.finished(request.id, .error("rank \(rank) is gone: \(failure)")))
            return
        }
        send(.add(request))
    }

    public func abort(_ id: RequestID) { send(.abort(id)) }

    public func wake(round: Int) { send(.wake(round: round)) }

    public func control(_ command: ControlCommand) { send(.control(command)) }

    /// The rank is leaving the cluster: when its connection closes, that is expected.
    public func retire() { state.withLock { $0.retired = true } }

    /// The rank's index from now on (a recovery renumbered the survivors).
    public func renumber(to rank: RankID) { state.withLock { $0.rank = rank } }

    /// Sends the rank away (it cannot serve: its recovery failed): it counts as lost with
    /// `reason` at once, and its process exits as its connection closes.
    public func dismiss(_ reason: String) {
        fail(reason)
        close()
    }

    /// Whether the rank is a member still: neither failed nor leaving.
    public var isAlive: Bool { state.withLock { $0.failure == nil && !$0.retired } }

    public var rankStatistics: [EngineStatistics] { [state.withLock { $0.statistics }] }

    public var failureReason: String? { state.withLock { $0.retired ? nil : $0.failure } }

    /// Closes the connection once what was sent before is out (at most a second more); the rank's
    /// process sees its front end leave and exits.
    public func close() {
        outgoing.withLock { $0.isClosed = true }
        queued.signal()
    }

    private func send(_ message: EngineMessage) {
        outgoing.withLock { outgoing in
            if !outgoing.isClosed { outgoing.messages.append(message) }
        }
        queued.signal()
    }

    private func writeFrames() {
        var batch: [EngineMessage] = []
        let interval = heartbeatTimeout.map { max(.milliseconds(100), $0 / 4) }
        var nextHeartbeat = interval.map { ContinuousClock.now + $0 }
        var sequence = 0
        while true {
            var closing = false
            while true {
                let isReady = outgoing.withLock { outgoing in
                    closing = outgoing.isClosed
                    guard !outgoing.messages.isEmpty || closing else { return false }
                    swap(&batch, &outgoing.messages)
                    return true
                }
                if isReady { break }
                guard let due = nextHeartbeat else {
                    queued.wait()
                    continue
                }
                if ContinuousClock.now >= due || queued.wait(timeout: .now() + max(0, (due - .now).seconds)) == .timedOut { break }
            }
            if let due = nextHeartbeat, let interval, let timeout = heartbeatTimeout, !closing, ContinuousClock.now >= due {
                let silent = ContinuousClock.now - state.withLock { $0.lastHeartbeatAnswer }
                if silent > timeout {
                    // The reason first: closing the socket ends the reader, which would fail the rank for its own.
                    fail("rank \(rank) answered no heartbeat for \(silent) (its process is stopped or cut off)")
                    close()
                    connection.close()
                    return
                }
                sequence += 1
                batch.append(.heartbeat(sequence: sequence))
                nextHeartbeat = .now + interval
            }
            for message in batch {
                do {
                    try connection.sendFrame(message.encoded(), deadline: .now + (closing ? .seconds(1) : .seconds(30)))
                } catch where closing {
                    break
                } catch {
                    close()
                    connection.close()
                    fail("sending to rank \(rank) failed: \(error)")
                    return
                }
            }
            batch.removeAll(keepingCapacity: true)
            if closing {
                connection.close()
                return
            }
        }
    }

    private func readFrames() {
        let ended = connection.receiveFrames { frame in
            switch try EngineMessage(decoding: frame) {
            case .outputs(let outputs):
                for output in outputs {
                    let sink = state.withLock { state in
                        output.finishReason == nil ? state.sinks[output.requestID] : state.sinks.removeValue(forKey: output.requestID)
                    }
                    sink?(output)
                }
            case .statistics(let figures): state.withLock { $0.statistics = figures }
            case .needWake(let round): onNeedWake(round)
            case .report(let rank, let report): onReport(rank, report)
            case .heartbeat: state.withLock { $0.lastHeartbeatAnswer = .now }
            case .hello, .add, .abort, .wake, .control: break
            }
        }
        // Nothing more can be sent either: the writer ends and closes the connection.
        close()
        fail("rank \(rank)'s process ended or its connection broke (\(ended))")
    }

    /// Ends every request this rank held with `reason`; later requests are refused.
    /// Only the first failure counts (the reader's end of a connection the writer closed comes second).
    private func fail(_ reason: String) {
        let failed = state.withLock { state -> (RankID, [RequestID: OutputSink])? in
            guard state.failure == nil else { return nil }
            state.failure = state.retired ? "rank \(state.rank) left the cluster" : reason
            defer { state.sinks.removeAll() }
            return (state.rank, state.sinks)
        }
        guard let (rank, orphans) = failed else { return }
        for (id, sink) in orphans {
            sink(.finished(id, .error(reason)))
        }
        onReport(rank, .lost(reason: reason))
    }
}
