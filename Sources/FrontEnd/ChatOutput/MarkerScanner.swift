import Jinja

/// Finds markers (`<think>`, `<tool_call>`, …) in text that arrives in pieces: text before one is
/// released at once except a tail that could be a marker's beginning, held until the next piece says.
/// Markers match by code point, as vLLM's parsers match them in Python.
struct MarkerScanner {
    let markers: [String]
    private var buffer = ""

    init(_ markers: [String]) { self.markers = markers }

    enum Result {
        /// Text that is certainly not part of a marker.
        case text(String)
        /// The earliest marker, the text before it, and what follows it in this piece.
        case found(before: String, marker: String, after: String)
    }

    mutating func feed(_ piece: String) -> Result {
        buffer += piece
        var earliest: (Range<Int>, String)?
        for marker in markers {
            if let range = buffer.firstByteRange(of: marker), earliest.map({ range.lowerBound < $0.0.lowerBound }) ?? true {
                earliest = (range, marker)
            }
        }
        let bytes = Array(buffer.utf8)
        if let (range, marker) = earliest {
            buffer = ""
            return .found(before: String(decoding: bytes[..<range.lowerBound], as: UTF8.self), marker: marker,
                          after: String(decoding: bytes[range.upperBound...], as: UTF8.self))
        }
        // A held tail begins with a marker's first byte, a lead byte, so both sides stay valid UTF-8.
        let held = markers.map { Self.partialSuffix(of: bytes, prefixing: Array($0.utf8)) }.max() ?? 0
        buffer = String(decoding: bytes.suffix(held), as: UTF8.self)
        return .text(String(decoding: bytes.dropLast(held), as: UTF8.self))
    }

    /// What is left at the end: text, since no marker came.
    mutating func finish() -> String {
        defer { buffer = "" }
        return buffer
    }

    /// The length in bytes of the longest suffix of `bytes` that begins `marker`.
    static func partialSuffix(of bytes: [UInt8], prefixing marker: [UInt8]) -> Int {
        var length = min(bytes.count, marker.count - 1)
        while length > 0 {
            if marker.starts(with: bytes.suffix(length)) { return length }
            length -= 1
        }
        return 0
    }
}
