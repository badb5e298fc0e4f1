import Compute
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Messages

/// The door of every listening port between processes: accepts connections and hands out only
/// those whose first frame (the hello that carries the join token) arrived in full, small and in
/// time. Until then a connection costs at most its hello: its length prefix is checked against
/// ``Limits/helloBytes`` before anything is allocated, a connection silent past
/// ``Limits/helloTimeout`` is closed, and at most ``Limits/pendingConnections`` wait (a new one
/// closes the oldest), so no one without the token can make the process allocate, spawn threads
/// or wait.
///
/// The hellos of all waiting connections are read by one `poll` loop in ``next(deadline:)``, so
/// a slow or silent connection delays no other. The caller checks the hello's content (the token)
/// and closes connections that fail it.
///
/// - Important: Used by one thread at a time (a lock enforces it).
/// Unchecked Sendable: its pending connections are used by one thread at a time, which a lock enforces.
public final class HelloGate: @unchecked Sendable {
    public struct Limits: Sendable {
        public var helloBytes = 4096
        public var helloTimeout: Duration = .seconds(5)
        public var pendingConnections = 64

        public init() {}
    }

    private struct Pending {
        let socket: TCPSocket
        let deadline: ContinuousClock.Instant
        var header = [UInt8](repeating: 0, count: 4)
        var headerFilled = 0
        var body: [UInt8] = []
        var bodyFilled = 0
        var length: Int?
    }

    private enum Progress {
        case waiting
        case complete
        case refused
    }

    private let listener: TCPListener
    public let limits: Limits
    private let lock = NSLock()
    private var pending: [Pending] = []

    public init(listener: TCPListener, limits: Limits = Limits()) {
        self.listener = listener
        self.limits = limits
    }

    public var port: Int { listener.port }

    /// Connections accepted whose hello has not arrived yet.
    public var pendingCount: Int {
        lock.lock()
        defer { lock.unlock() }
        return pending.count
    }

    /// Closes the listener and every connection still waiting.
    public func close() {
        listener.close()
        lock.lock()
        let waiting = pending
        pending.removeAll()
        lock.unlock()
        for entry in waiting { entry.socket.close() }
    }

    /// The next connection with its hello; `nil` at `deadline` or once the listener is closed.
    public func next(deadline: ContinuousClock.Instant) -> (socket: TCPSocket, hello: [UInt8])? {
        lock.lock()
        defer { lock.unlock() }
        var entries: [pollfd] = []
        while listener.descriptor >= 0 {
            let now = ContinuousClock.now
            pending.removeAll { entry in
                guard now >= entry.deadline else { return false }
                entry.socket.close()
                return true
            }
            guard now < deadline else { return nil }
            let wake = pending.reduce(min(deadline, now + .milliseconds(200))) { min($0, $1.deadline) }
            entries.removeAll(keepingCapacity: true)
            entries.append(pollfd(fd: listener.descriptor, events: Int16(POLLIN), revents: 0))
            for entry in pending { entries.append(pollfd(fd: entry.socket.descriptor, events: Int16(POLLIN), revents: 0)) }
            let ready = poll(&entries, nfds_t(entries.count), Int32(max(0, (wake - now).milliseconds) + 1))
            guard ready > 0 else { continue }
            // Waiting connections first, newest last: removing by index from the back keeps earlier indices valid.
            for index in pending.indices.reversed() where entries[index + 1].revents != 0 {
                switch advance(&pending[index]) {
                case .waiting: continue
                case .refused: pending.remove(at: index).socket.close()
                case .complete:
                    let entry = pending.remove(at: index)
                    return (entry.socket, entry.body)
                }
            }
            if entries[0].revents != 0, let socket = listener.acceptReady() {
                // Full: the oldest goes. A client that sends its hello with its connection is read
                // before the next accept, so a flood of silent connections cannot keep it out.
                if pending.count >= limits.pendingConnections { pending.removeFirst().socket.close() }
                pending.append(Pending(socket: socket, deadline: .now + limits.helloTimeout))
            }
        }
        return nil
    }

    /// Reads what has arrived of one hello without blocking.
    private func advance(_ entry: inout Pending) -> Progress {
        while true {
            let received: Int
            let descriptor = entry.socket.descriptor
            if let length = entry.length {
                if entry.bodyFilled == length { return .complete }
                let filled = entry.bodyFilled
                received = entry.body.withUnsafeMutableBytes {
                    recv(descriptor, $0.baseAddress! + filled, length - filled, Int32(MSG_DONTWAIT))
                }
            } else {
                let filled = entry.headerFilled
                received = entry.header.withUnsafeMutableBytes {
                    recv(descriptor, $0.baseAddress! + filled, 4 - filled, Int32(MSG_DONTWAIT))
                }
            }
            if received == 0 { return .refused }
            if received < 0 { return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? .waiting : .refused }
            if entry.length == nil {
                entry.headerFilled += received
                guard entry.headerFilled == 4 else { continue }
                var reader = ByteReader(entry.header)
                guard let length = try? Int(reader.u32()), length <= limits.helloBytes else { return .refused }
                entry.length = length
                entry.body = [UInt8](repeating: 0, count: length)
                if length == 0 { return .complete }
            } else {
                entry.bodyFilled += received
            }
        }
    }
}
