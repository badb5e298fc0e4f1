/// Finds markers (`<think>`, `<tool_call>`, …) in text that arrives in pieces: text before one is
/// released at once except a tail that could be a marker's beginning, held until the next piece says.
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
        var earliest: (Range<String.Index>, String)?
        for marker in markers {
            if let range = buffer.firstRange(of: marker), earliest.map({ range.lowerBound < $0.0.lowerBound }) ?? true {
                earliest = (range, marker)
            }
        }
        if let (range, marker) = earliest {
            let before = String(buffer[..<range.lowerBound]), after = String(buffer[range.upperBound...])
            buffer = ""
            return .found(before: before, marker: marker, after: after)
        }
        let held = markers.map { Self.partialSuffix(of: buffer, prefixing: $0) }.max() ?? 0
        let released = String(buffer.dropLast(held))
        buffer = String(buffer.suffix(held))
        return .text(released)
    }

    /// What is left at the end: text, since no marker came.
    mutating func finish() -> String {
        defer { buffer = "" }
        return buffer
    }

    /// The length (in characters) of the longest suffix of `text` that begins `marker`.
    static func partialSuffix(of text: String, prefixing marker: String) -> Int {
        var length = min(text.count, marker.count - 1)
        while length > 0 {
            if marker.hasPrefix(text.suffix(length)) { return length }
            length -= 1
        }
        return 0
    }
}
