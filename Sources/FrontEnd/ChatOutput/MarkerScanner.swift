/// Finds a marker (`<think>`, `<tool_call>`, …) in text that arrives in pieces: text before it
/// is released at once except a tail that could be the marker's beginning, held until the next
/// piece says.
struct MarkerScanner {
    let marker: String
    private var buffer = ""

    init(_ marker: String) { self.marker = marker }

    enum Result {
        /// Text that is certainly not part of the marker.
        case text(String)
        /// Text before the marker, and what follows it in this piece.
        case found(before: String, after: String)
    }

    mutating func feed(_ piece: String) -> Result {
        buffer += piece
        if let range = buffer.firstRange(of: marker) {
            let before = String(buffer[..<range.lowerBound]), after = String(buffer[range.upperBound...])
            buffer = ""
            return .found(before: before, after: after)
        }
        let held = Self.partialSuffix(of: buffer, prefixing: marker)
        let released = String(buffer.dropLast(held))
        buffer = String(buffer.suffix(held))
        return .text(released)
    }

    /// What is left at the end: text, since the marker never came.
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
