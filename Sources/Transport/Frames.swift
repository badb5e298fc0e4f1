/// Builds a message: little-endian integers, length-prefixed byte strings.
public struct ByteWriter: Sendable {
    public private(set) var bytes: [UInt8] = []

    public init() {}

    public mutating func u8(_ value: UInt8) { bytes.append(value) }

    public mutating func u32(_ value: UInt32) { withUnsafeBytes(of: value.littleEndian) { bytes += $0 } }

    public mutating func i64(_ value: Int64) { withUnsafeBytes(of: value.littleEndian) { bytes += $0 } }

    public mutating func data(_ value: [UInt8]) {
        u32(UInt32(value.count))
        bytes += value
    }

    public mutating func string(_ value: String) { data(Array(value.utf8)) }
}

/// Reads what ``ByteWriter`` wrote; a short or malformed message is a protocol violation.
public struct ByteReader: Sendable {
    private let bytes: [UInt8]
    private var offset = 0

    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    public var isAtEnd: Bool { offset == bytes.count }

    /// Bytes not read yet: no list in the message can have more elements than this.
    public var remainingCount: Int { bytes.count - offset }

    private mutating func take(_ count: Int) throws -> ArraySlice<UInt8> {
        guard count >= 0, bytes.count - offset >= count else {
            throw TransportError.protocolViolation("a message ended early")
        }
        defer { offset += count }
        return bytes[offset..<(offset + count)]
    }

    public mutating func u8() throws -> UInt8 { try take(1).first! }

    public mutating func u32() throws -> UInt32 {
        try take(4).reversed().reduce(0) { $0 << 8 | UInt32($1) }
    }

    public mutating func i64() throws -> Int64 {
        Int64(bitPattern: try take(8).reversed().reduce(0) { $0 << 8 | UInt64($1) })
    }

    public mutating func data() throws -> [UInt8] { Array(try take(Int(try u32()))) }

    public mutating func string() throws -> String {
        let raw = try data()
        guard let text = String(validating: raw, as: UTF8.self) else {
            throw TransportError.protocolViolation("a string is not UTF-8")
        }
        return text
    }
}

extension TCPSocket {
    /// The largest message either side accepts from an authenticated peer; a longer length
    /// prefix means a broken peer. Before authentication, ``HelloGate`` allows far less.
    public static let maxFrameBytes = 1 << 30

    /// Sends a frame: a 4-byte little-endian length, then the bytes.
    public func sendFrame(_ bytes: [UInt8], deadline: ContinuousClock.Instant) throws {
        var frame = ByteWriter()
        frame.u32(UInt32(bytes.count))
        let header = frame.bytes
        try header.withUnsafeBytes { try write($0, deadline: deadline) }
        try bytes.withUnsafeBytes { try write($0, deadline: deadline) }
    }

    /// Memory for a frame grows as its bytes arrive, a chunk at a time, so that a length prefix
    /// alone (a peer that lies or dies) costs at most one chunk.
    static let receiveChunkBytes = 1 << 20

    /// Hands every frame to `handle` until the connection ends or `handle` throws, and returns
    /// why it stopped. No deadline: this is the reader of a peer that speaks when it has
    /// something to say (every long-lived connection has one, on a thread of its own).
    public func receiveFrames(_ handle: ([UInt8]) throws -> Void) -> any Error {
        while true {
            do {
                try handle(try receiveFrame(deadline: .now + .seconds(86_400 * 365)))
            } catch {
                return error
            }
        }
    }

    public func receiveFrame(deadline: ContinuousClock.Instant, limit: Int = maxFrameBytes) throws -> [UInt8] {
        var header = [UInt8](repeating: 0, count: 4)
        try header.withUnsafeMutableBytes { try read(into: $0, deadline: deadline) }
        var reader = ByteReader(header)
        let length = Int(try reader.u32())
        guard length <= limit else { throw TransportError.protocolViolation("a frame of \(length) bytes (at most \(limit) here)") }
        var body: [UInt8] = []
        body.reserveCapacity(min(length, Self.receiveChunkBytes))
        while body.count < length {
            let start = body.count, count = min(length - start, max(start, Self.receiveChunkBytes))
            body.append(contentsOf: repeatElement(0, count: count))
            try body.withUnsafeMutableBytes { try read(into: UnsafeMutableRawBufferPointer(rebasing: $0[start...]), deadline: deadline) }
        }
        return body
    }
}
