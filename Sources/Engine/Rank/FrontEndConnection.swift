import Messages
import Synchronization
import Transport

/// A rank's connection to the front end, written by two threads: the step loop sends outputs,
/// figures and reports, and the reader thread answers heartbeats at once (however long a step or
/// a collective takes). The lock keeps each frame whole.
final class FrontEndConnection: Sendable {
    let socket: TCPSocket
    private let sending = Mutex(())

    init(_ socket: TCPSocket) { self.socket = socket }

    func send(_ message: EngineMessage, within deadline: Duration) throws {
        let frame = message.encoded()
        try sending.withLock { _ in try socket.sendFrame(frame, deadline: .now + deadline) }
    }
}
