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
        var haystack = self, needle = part
        haystack.makeContiguousUTF8()
        needle.makeContiguousUTF8()
        return haystack.utf8.withContiguousStorageIfAvailable { bytes in
            needle.utf8.withContiguousStorageIfAvailable { pattern in bytes.firstRange(of: pattern, from: start) } ?? nil
        } ?? nil
    }

    /// The byte range of the last occurrence of `part`.
    public func lastByteRange(of part: String) -> Range<Int>? {
        var haystack = self, needle = part
        haystack.makeContiguousUTF8()
        needle.makeContiguousUTF8()
        return haystack.utf8.withContiguousStorageIfAvailable { bytes in
            needle.utf8.withContiguousStorageIfAvailable { pattern -> Range<Int>? in
                guard pattern.count <= bytes.count else { return nil }
                var index = bytes.count - pattern.count
                while index >= 0 {
                    if bytes[index] == pattern.first, UnsafeBufferPointer(rebasing: bytes[index..<index + pattern.count]).elementsEqual(pattern) {
                        return index..<index + pattern.count
                    }
                    index -= 1
                }
                return nil
            } ?? nil
        } ?? nil
    }

    public func containsCodePoints(_ part: String) -> Bool { firstByteRange(of: part) != nil }
}

extension Collection where Element == UInt8, Index == Int {
    /// The first occurrence of `pattern` at or after `start`.
    public func firstRange<Pattern: Collection>(of pattern: Pattern, from start: Int) -> Range<Int>?
    where Pattern.Element == UInt8 {
        guard let first = pattern.first else { return start <= endIndex ? start..<start : nil }
        var index = Swift.max(start, startIndex)
        while index + pattern.count <= endIndex {
            if self[index] == first, self[index..<index + pattern.count].elementsEqual(pattern) { return index..<index + pattern.count }
            index += 1
        }
        return nil
    }
}
