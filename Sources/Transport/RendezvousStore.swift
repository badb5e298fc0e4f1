import Foundation
import Messages
import Synchronization

/// The coordinator's key-value service, the role torch's TCPStore plays in vLLM: ranks publish
/// their addresses and agree on ids through it, and groups are built from it.
///
/// Threads: one accepts connections and reads their hellos (``HelloGate``: nothing is allocated
/// for a connection before its token is checked), one serves each authenticated connection. The
/// table is behind a mutex; operations that wait (`get`, `waitForKeys`) sleep in slices until a
/// change wakes them, and give up at their deadline or when their client goes away, so a
/// vanished client never holds anything.
public final class RendezvousStore: Sendable {
    public let port: Int
    private let token: String
    private let gate: HelloGate
    private struct Table {
        var values: [String: [UInt8]] = [:]
        var connections: [ObjectIdentifier: TCPSocket] = [:]
        var isClosed = false
        /// The wake-up of each waiting request, signalled at every change and at the close.
        var waiters: [ObjectIdentifier: DispatchSemaphore] = [:]
    }
    private let table = Mutex(Table())

    /// Listens on `host:port` (0: any free port, see ``port``); clients must present `token`.
    public init(host: String = "127.0.0.1", port: Int = 0, token: String, limits: HelloGate.Limits = HelloGate.Limits()) throws {
        gate = HelloGate(listener: try TCPSocket.listen(host: host, port: port), limits: limits)
        self.port = gate.port
        self.token = token
        let thread = Thread { [self] in acceptLoop() }
        thread.name = "flexpert-store-accept"
        thread.start()
    }

    deinit { close() }

    /// Connections being served now (tests watch it drop when clients leave).
    public var connectionCount: Int { table.withLock { $0.connections.count } }

    public func close() {
        let closing = table.withLock { table -> (open: [TCPSocket], waiters: [DispatchSemaphore])? in
            guard !table.isClosed else { return nil }
            table.isClosed = true
            return (Array(table.connections.values), Array(table.waiters.values))
        }
        guard let closing else { return }
        for waiter in closing.waiters { waiter.signal() }
        gate.close()
        for socket in closing.open { socket.close() }
    }

    private func acceptLoop() {
        while true {
            if table.withLock({ $0.isClosed }) { return }
            guard let (socket, hello) = gate.next(deadline: .now + .seconds(1)) else { continue }
            var reader = ByteReader(hello)
            guard (try? reader.u8()) == StoreOperation.hello.rawValue, let presented = try? reader.string(),
                  JoinToken.matches(presented, token) else {
                try? reply(socket, .failure) { $0.string("the join token is wrong") }
                socket.close()
                continue
            }
            let isOpen = table.withLock { table in
                if !table.isClosed { table.connections[ObjectIdentifier(socket)] = socket }
                return !table.isClosed
            }
            guard isOpen else {
                socket.close()
                return
            }
            let thread = Thread { [self] in serve(socket) }
            thread.name = "flexpert-store-connection"
            thread.start()
        }
    }

    private func serve(_ socket: TCPSocket) {
        defer {
            table.withLock { $0.connections[ObjectIdentifier(socket)] = nil }
            socket.close()
        }
        guard (try? reply(socket, .ok) { _ in }) != nil else { return }
        /// A request the store refuses: answered, then the connection ends.
        struct Refused: Error {}
        _ = socket.receiveFrames { request in
            do {
                try handle(request, on: socket)
            } catch {
                try? reply(socket, .failure) { $0.string("\(error)") }
                throw Refused()
            }
        }
    }

    private func handle(_ request: [UInt8], on socket: TCPSocket) throws {
        var reader = ByteReader(request)
        guard let operation = StoreOperation(rawValue: try reader.u8()) else {
            throw TransportError.protocolViolation("unknown store operation")
        }
        switch operation {
        case .hello:
            throw TransportError.protocolViolation("a second hello")
        case .set:
            let key = try reader.string(), value = try reader.data()
            update { $0[key] = value }
            try reply(socket, .ok) { _ in }
        case .get:
            let key = try reader.string(), timeout = try reader.i64()
            if let value = waitFor([key], timeout: timeout, client: socket)?[0] {
                try reply(socket, .ok) { $0.data(value) }
            } else {
                try reply(socket, .timeout) { $0.string("get '\(key)'") }
            }
        case .add:
            let key = try reader.string(), delta = try reader.i64()
            var result: Int64 = 0
            update { table in
                let current = table[key].flatMap { Int64(String(decoding: $0, as: UTF8.self)) } ?? 0
                result = current &+ delta
                table[key] = Array(String(result).utf8)
            }
            try reply(socket, .ok) { $0.i64(result) }
        case .compareAndSet:
            let key = try reader.string(), hasExpected = try reader.u8() != 0, expected = try reader.data(),
                desired = try reader.data()
            var swapped = false
            var current: [UInt8] = []
            update { table in
                if table[key] == (hasExpected ? expected : nil) {
                    table[key] = desired
                    swapped = true
                }
                current = table[key] ?? []
            }
            try reply(socket, .ok) { $0.u8(swapped ? 1 : 0); $0.data(current) }
        case .delete:
            let key = try reader.string()
            var existed = false
            update { existed = $0.removeValue(forKey: key) != nil }
            try reply(socket, .ok) { $0.u8(existed ? 1 : 0) }
        case .waitForKeys:
            let count = Int(try reader.u32())
            guard count <= 1 << 16 else { throw TransportError.protocolViolation("\(count) keys") }
            let keys = try (0..<count).map { _ in try reader.string() }
            let timeout = try reader.i64()
            if waitFor(keys, timeout: timeout, client: socket) != nil {
                try reply(socket, .ok) { _ in }
            } else {
                try reply(socket, .timeout) { $0.string("wait for \(keys.count) keys") }
            }
        }
    }

    private func update(_ change: (inout [String: [UInt8]]) -> Void) {
        let waiters = table.withLock { table in
            change(&table.values)
            return Array(table.waiters.values)
        }
        for waiter in waiters { waiter.signal() }
    }

    /// The values of `keys` once all exist; `nil` at the deadline, when the client left, or at close.
    private func waitFor(_ keys: [String], timeout milliseconds: Int64, client: TCPSocket) -> [[UInt8]]? {
        let deadline = DispatchTime.now() + .milliseconds(Int(max(0, min(milliseconds, Int64(Int32.max)))))
        let wake = DispatchSemaphore(value: 0)
        let waiter = ObjectIdentifier(wake)
        defer { _ = table.withLock { $0.waiters.removeValue(forKey: waiter) } }
        while true {
            let (found, isClosed) = table.withLock { table -> ([[UInt8]]?, Bool) in
                let found = keys.compactMap { table.values[$0] }
                if found.count == keys.count { return (found, table.isClosed) }
                table.waiters[waiter] = wake
                return (nil, table.isClosed)
            }
            if let found { return found }
            if isClosed || DispatchTime.now() >= deadline { return nil }
            // Wake at least every 100 ms to notice a client that hung up while waiting.
            _ = wake.wait(timeout: min(deadline, .now() + .milliseconds(100)))
            if client.peerHasClosed { return nil }
        }
    }

    private func reply(_ socket: TCPSocket, _ status: StoreStatus, _ body: (inout ByteWriter) -> Void) throws {
        var writer = ByteWriter()
        writer.u8(status.rawValue)
        body(&writer)
        try socket.sendFrame(writer.bytes, deadline: .now + .seconds(10))
    }
}
