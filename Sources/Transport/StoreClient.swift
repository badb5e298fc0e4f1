import Compute
import Foundation
import Messages

/// One connection to a ``RendezvousStore``. Calls are synchronous and serialized by a lock, so a
/// client may be shared by threads; every call ends by its deadline, with a value or an error.
public final class StoreClient: Sendable {
    private let socket: TCPSocket
    private let lock = NSLock()
    /// How long a non-waiting request may take on the wire.
    private let requestTimeout: Duration
    /// The join token this client presented; groups built through it present it to their peers too.
    public let token: String

    public init(host: String, port: Int, token: String, connectTimeout: Duration = .seconds(30),
                requestTimeout: Duration = .seconds(30)) throws {
        socket = try TCPSocket.connect(host: host, port: port, deadline: .now + connectTimeout)
        self.requestTimeout = requestTimeout
        self.token = token
        var hello = ByteWriter()
        hello.u8(StoreOperation.hello.rawValue)
        hello.string(token)
        var reader = try exchange(hello.bytes, deadline: .now + requestTimeout)
        guard try reader.u8() == StoreStatus.ok.rawValue else {
            throw TransportError.refused((try? reader.string()) ?? "the store refused the connection")
        }
    }

    public func close() { socket.close() }

    public func set(_ key: String, _ value: [UInt8]) throws {
        _ = try request(.set, timeout: nil) { $0.string(key); $0.data(value) }
    }

    /// The value of `key`, waiting until it is set or `timeout` passes.
    public func get(_ key: String, timeout: Duration) throws -> [UInt8] {
        var reader = try request(.get, timeout: timeout) { $0.string(key); $0.i64(timeout.milliseconds) }
        return try reader.data()
    }

    /// Adds `delta` to the integer at `key` (absent is 0) and returns the sum.
    public func add(_ key: String, _ delta: Int64) throws -> Int64 {
        var reader = try request(.add, timeout: nil) { $0.string(key); $0.i64(delta) }
        return try reader.i64()
    }

    /// Sets `key` to `desired` if it holds `expected` (`nil`: if it is absent); returns whether
    /// it did and the value now stored.
    public func compareAndSet(_ key: String, expected: [UInt8]?, desired: [UInt8]) throws -> (swapped: Bool, current: [UInt8]) {
        var reader = try request(.compareAndSet, timeout: nil) {
            $0.string(key)
            $0.u8(expected == nil ? 0 : 1)
            $0.data(expected ?? [])
            $0.data(desired)
        }
        return (try reader.u8() != 0, try reader.data())
    }

    /// Removes `key`; whether it existed.
    @discardableResult
    public func delete(_ key: String) throws -> Bool {
        var reader = try request(.delete, timeout: nil) { $0.string(key) }
        return try reader.u8() != 0
    }

    /// Returns once every key exists; throws at the deadline.
    public func wait(for keys: [String], timeout: Duration) throws {
        _ = try request(.waitForKeys, timeout: timeout) { writer in
            writer.u32(UInt32(keys.count))
            for key in keys { writer.string(key) }
            writer.i64(timeout.milliseconds)
        }
    }

    /// Returns once `size` participants reached the barrier `name` (a name is used once; put a
    /// generation or round number in it to reuse a barrier).
    public func barrier(_ name: String, size: Int, timeout: Duration) throws {
        let arrived = try add("barrier/\(name)/arrived", 1)
        if arrived == Int64(size) { try set("barrier/\(name)/done", []) }
        try wait(for: ["barrier/\(name)/done"], timeout: timeout)
    }

    private func request(_ operation: StoreOperation, timeout: Duration?,
                         _ fields: (inout ByteWriter) -> Void) throws -> ByteReader {
        var writer = ByteWriter()
        writer.u8(operation.rawValue)
        fields(&writer)
        // A waiting request may take its whole timeout on the server, plus the trip.
        let deadline = ContinuousClock.now + (timeout ?? .zero) + requestTimeout
        var reader = try exchange(writer.bytes, deadline: deadline)
        switch StoreStatus(rawValue: try reader.u8()) {
        case .ok: return reader
        case .timeout: throw TransportError.timeout("store " + ((try? reader.string()) ?? "\(operation)"))
        case .failure: throw TransportError.refused((try? reader.string()) ?? "the store failed")
        case nil: throw TransportError.protocolViolation("unknown store status")
        }
    }

    private func exchange(_ bytes: [UInt8], deadline: ContinuousClock.Instant) throws -> ByteReader {
        lock.lock()
        defer { lock.unlock() }
        try socket.sendFrame(bytes, deadline: deadline)
        return ByteReader(try socket.receiveFrame(deadline: deadline))
    }
}
