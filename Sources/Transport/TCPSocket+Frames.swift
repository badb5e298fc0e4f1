import Messages

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
