/// Python compares strings code point by code point; Swift's `==`, `hasPrefix` and `contains`
/// compare by canonical equivalence, under which "é" equals "e\u{301}". A template's `==`, `in`
/// and `startswith` must give Python's answers, so they compare UTF-8 bytes, which for valid
/// strings is the same as comparing code points.
extension String {
    public func equalsCodePoints(_ other: String) -> Bool { utf8.elementsEqual(other.utf8) }

    public func startsWithCodePoints(_ prefix: String) -> Bool { utf8.starts(with: prefix.utf8) }

    public func endsWithCodePoints(_ suffix: String) -> Bool {
        utf8.count >= suffix.utf8.count && utf8.reversed().starts(with: suffix.utf8.reversed())
    }

    /// The byte range of the first occurrence of `part` at or after byte `start`; UTF-8 is
    /// self-synchronising, so a byte match of valid strings is a code-point match.
    public func firstByteRange(of part: String, from start: Int = 0) -> Range<Int>? {
        let haystack = Array(utf8), needle = Array(part.utf8)
        guard !needle.isEmpty else { return start <= haystack.count ? start..<start : nil }
        var index = start
        while index + needle.count <= haystack.count {
            if haystack[index] == needle[0], haystack[index..<index + needle.count].elementsEqual(needle) {
                return index..<index + needle.count
            }
            index += 1
        }
        return nil
    }

    public func containsCodePoints(_ part: String) -> Bool { firstByteRange(of: part) != nil }
}
