import Foundation
import Messages

/// The coordinator's key-value service, the role torch's TCPStore plays in vLLM: ranks publish
/// their addresses and agree on ids through it, and groups are built from it.
///
/// Threads: one accepts connections and reads their hellos (``HelloGate``: nothing is allocated
/// for a connection before its token is checked), one serves each authenticated connection. The
/// table is guarded by `condition`; operations that wait (`get`, `waitForKeys`) sleep on it in
/// slices and give up at their deadline or when their client goes away, so a vanished client
/// never holds anything.
/// Unchecked Sendable: its map and waiters are guarded by an NSCondition the compiler cannot see.
public final class RendezvousStore: @unchecked Sendable {
    public let port: Int
    private let token: String
    private let gate: HelloGate
    private let condition = NSCondition()
    // Guarded by `condition`.
    private var values: [String: [UInt8]] = [:]
    private var connections: [ObjectIdentifier: TCPSocket] = [:]
    private var isClosed = false

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
    public var connectionCount: Int {
        condition.lock()
        defer { condition.unlock() }
        return connections.count
    }

    public func close() {
        condition.lock()
        guard !isClosed else {
            condition.unlock()
            return
        }
        isClosed = true
        let open = Array(connections.values)
        condition.broadcast()
        condition.unlock()
        gate.close()
        for socket in open { socket.close() }
    }

    private func acceptLoop() {
        while true {
            condition.lock()
            let closed = isClosed
            condition.unlock()
            if closed { return }
            guard let (socket, hello) = gate.next(deadline: .now + .seconds(1)) else { continue }
            var reader = ByteReader(hello)
            guard (try? reader.u8()) == StoreOperation.hello.rawValue, let presented = try? reader.string(),
                  JoinToken.matches(presented, token) else {
                try? reply(socket, .failure) { $0.string("the join token is wrong") }
                socket.close()
                continue
            }
            condition.lock()
            if isClosed {
                condition.unlock()
                socket.close()
                return
            }
            connections[ObjectIdentifier(socket)] = socket
            condition.unlock()
            let thread = Thread { [self] in serve(socket) }
            thread.name = "flexpert-store-connection"
            thread.start()
        }
    }

    private func serve(_ socket: TCPSocket) {
        defer {
            condition.lock()
            connections[ObjectIdentifier(socket)] = nil
            condition.unlock()
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
        condition.lock()
        change(&values)
        condition.broadcast()
        condition.unlock()
    }

    /// The values of `keys` once all exist; `nil` at the deadline, when the client left, or at close.
    private func waitFor(_ keys: [String], timeout milliseconds: Int64, client: TCPSocket) -> [[UInt8]]? {
        let deadline = Date().addingTimeInterval(Double(max(0, milliseconds)) / 1000)
        condition.lock()
        defer { condition.unlock() }
        while true {
            let found = keys.compactMap { values[$0] }
            if found.count == keys.count { return found }
            if isClosed || Date() >= deadline { return nil }
            // Wake at least every 100 ms to notice a client that hung up while waiting.
            _ = condition.wait(until: min(deadline, Date().addingTimeInterval(0.1)))
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
