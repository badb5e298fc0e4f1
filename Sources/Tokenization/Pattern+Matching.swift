extension Pattern {
    /// Splits `text` the way the `Split` pre-tokenizer with behaviour `Isolated` does: every
    /// match is a piece, and so is every run of text between matches.
    func split(_ text: [UInt32]) -> [Range<Int>] {
        var pieces: [Range<Int>] = []
        var position = 0
        var unmatchedStart = 0
        while position < text.count {
            if let end = matchEnd(text, at: position), end > position {
                if unmatchedStart < position { pieces.append(unmatchedStart..<position) }
                pieces.append(position..<end)
                position = end
                unmatchedStart = end
            } else {
                position += 1
            }
        }
        if unmatchedStart < text.count { pieces.append(unmatchedStart..<text.count) }
        return pieces
    }

    /// The end of the leftmost-first match starting exactly at `start`, if any.
    func matchEnd(_ text: [UInt32], at start: Int) -> Int? {
        var result: Int?
        _ = Self.match(root, text, start) { end in
            result = end
            return true
        }
        return result
    }

    /// Continuation-passing backtracking: `next` is called with each candidate end position in
    /// priority order and returns whether the rest of the pattern matched from there.
    private static func match(_ node: Node, _ text: [UInt32], _ position: Int, _ next: (Int) -> Bool) -> Bool {
        switch node {
        case .scalar(let value, let caseInsensitive):
            guard position < text.count else { return false }
            let actual = text[position]
            let isMatch = actual == value
                || (caseInsensitive && (lowercased(actual) == lowercased(value)))
            return isMatch && next(position + 1)
        case .set(let set):
            guard position < text.count, set.contains(text[position]) else { return false }
            return next(position + 1)
        case .sequence(let items):
            return matchSequence(items[...], text, position, next)
        case .alternation(let branches):
            for branch in branches where match(branch, text, position, next) { return true }
            return false
        case .repetition(let inner, let minimum, let maximum):
            if case .set(let set) = inner {
                // Single-scalar repetition: consume greedily, then give back one at a time.
                var end = position
                while end < text.count, end - position < maximum, set.contains(text[end]) { end += 1 }
                while end - position >= minimum {
                    if next(end) { return true }
                    end -= 1
                }
                return false
            }
            return matchRepetition(inner, text, position, count: 0, minimum: minimum, maximum: maximum, next)
        case .lookahead(let inner, let isNegative):
            let found = match(inner, text, position) { _ in true }
            return found != isNegative && next(position)
        }
    }

    private static func matchSequence(_ items: ArraySlice<Node>, _ text: [UInt32], _ position: Int,
                                      _ next: (Int) -> Bool) -> Bool {
        guard let first = items.first else { return next(position) }
        return match(first, text, position) { end in matchSequence(items.dropFirst(), text, end, next) }
    }

    private static func matchRepetition(_ inner: Node, _ text: [UInt32], _ position: Int, count: Int,
                                        minimum: Int, maximum: Int, _ next: (Int) -> Bool) -> Bool {
        if count < maximum {
            let matchedMore = match(inner, text, position) { end in
                end > position && matchRepetition(inner, text, end, count: count + 1, minimum: minimum, maximum: maximum, next)
            }
            if matchedMore { return true }
        }
        return count >= minimum && next(position)
    }
}
