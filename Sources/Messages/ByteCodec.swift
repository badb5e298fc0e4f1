/// The wire format of every message between Flexpert's processes: little-endian integers and
/// length-prefixed byte strings, written by ``ByteWriter`` and read back by ``ByteReader``.
public struct MalformedMessage: Error, CustomStringConvertible, Equatable {
    public let detail: String

    public init(_ detail: String) { self.detail = detail }

    public var description: String { "protocol violation: \(detail)" }
}

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
            throw MalformedMessage("a message ended early")
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
            throw MalformedMessage("a string is not UTF-8")
        }
        return text
    }
}
