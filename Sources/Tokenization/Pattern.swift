/// The subset of Oniguruma regular expressions that Hugging Face pre-tokenizers use: literals,
/// classes with Unicode categories (`\p{L}`, `\p{Lu}`, `\p{M}`, `\p{P}`, …)/`\s` and negation, `?`/`*`/`+`/`{m,n}`, groups with `(?i:…)`,
/// alternation and look-ahead. Anything else is refused when parsed, never misread.
///
/// Matching is backtracking with leftmost-first alternation and greedy quantifiers, as in
/// Oniguruma, over Unicode scalars (not grapheme clusters, which would merge combining marks).
struct Pattern: Sendable {
    indirect enum Node: Sendable {
        case scalar(UInt32, caseInsensitive: Bool)
        case set(ScalarSet)
        case sequence([Node])
        case alternation([Node])
        case repetition(Node, minimum: Int, maximum: Int)
        case lookahead(Node, isNegative: Bool)
    }

    let source: String
    let root: Node

    init(_ source: String) throws {
        self.source = source
        var parser = Parser(scalars: Array(source.unicodeScalars), source: source)
        root = try parser.parseAlternation(caseInsensitive: false)
        guard parser.index == parser.scalars.count else {
            throw TokenizationError.badPattern(pattern: source, reason: "unbalanced ')' at \(parser.index)")
        }
    }
}

/// A set of scalars: listed items, possibly negated.
struct ScalarSet: Sendable {
    enum Item: Sendable {
        case scalar(UInt32)
        case range(UInt32, UInt32)
        case letter, number, whitespace, digit, word
        case notLetter, notNumber, notWhitespace, notDigit, notWord
        /// `\p{Lu}`, `\p{M}`, `\p{P}`, … (`\P{…}` when negated).
        case categories([Unicode.GeneralCategory], isNegated: Bool)
        case any
    }

    var items: [Item]
    var isNegated: Bool
    var caseInsensitive: Bool

    func contains(_ value: UInt32) -> Bool {
        var found = false
        for item in items where Self.matches(item, value) || (caseInsensitive && Self.matchesFolded(item, value)) {
            found = true
            break
        }
        return found != isNegated
    }

    private static func matchesFolded(_ item: Item, _ value: UInt32) -> Bool {
        let lower = Pattern.lowercased(value)
        let upper = Pattern.uppercased(value)
        return (lower != value && matches(item, lower)) || (upper != value && matches(item, upper))
    }

    static func matches(_ item: Item, _ value: UInt32) -> Bool {
        switch item {
        case .scalar(let scalar): return value == scalar
        case .range(let low, let high): return value >= low && value <= high
        case .letter: return isLetter(value)
        case .number: return isNumber(value)
        case .whitespace: return isWhitespace(value)
        case .digit: return isDigit(value)
        case .word: return isLetter(value) || isNumber(value) || value == 0x5F || isMark(value)
        case .notLetter: return !isLetter(value)
        case .notNumber: return !isNumber(value)
        case .notWhitespace: return !isWhitespace(value)
        case .notDigit: return !isDigit(value)
        case .notWord: return !(isLetter(value) || isNumber(value) || value == 0x5F || isMark(value))
        case .categories(let categories, let isNegated):
            guard let scalar = Unicode.Scalar(value) else { return isNegated }
            return categories.contains(scalar.properties.generalCategory) != isNegated
        case .any: return value != 0x0A
        }
    }

    static func isLetter(_ value: UInt32) -> Bool {
        if value < 0x80 { return (value | 0x20) >= 0x61 && (value | 0x20) <= 0x7A }
        guard let scalar = Unicode.Scalar(value) else { return false }
        switch scalar.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return true
        default: return false
        }
    }

    static func isNumber(_ value: UInt32) -> Bool {
        if value < 0x80 { return value >= 0x30 && value <= 0x39 }
        guard let scalar = Unicode.Scalar(value) else { return false }
        switch scalar.properties.generalCategory {
        case .decimalNumber, .letterNumber, .otherNumber: return true
        default: return false
        }
    }

    static func isDigit(_ value: UInt32) -> Bool {
        if value < 0x80 { return value >= 0x30 && value <= 0x39 }
        return Unicode.Scalar(value)?.properties.generalCategory == .decimalNumber
    }

    static func isMark(_ value: UInt32) -> Bool {
        guard value >= 0x300, let scalar = Unicode.Scalar(value) else { return false }
        switch scalar.properties.generalCategory {
        case .nonspacingMark, .spacingMark, .enclosingMark: return true
        default: return false
        }
    }

    static func isWhitespace(_ value: UInt32) -> Bool {
        if value < 0x80 { return value == 0x20 || (value >= 0x09 && value <= 0x0D) }
        return Unicode.Scalar(value)?.properties.isWhitespace ?? false
    }
}

extension Pattern {
    static func lowercased(_ value: UInt32) -> UInt32 {
        guard let scalar = Unicode.Scalar(value) else { return value }
        let mapped = scalar.properties.lowercaseMapping.unicodeScalars
        return mapped.count == 1 ? mapped.first!.value : value
    }

    static func uppercased(_ value: UInt32) -> UInt32 {
        guard let scalar = Unicode.Scalar(value) else { return value }
        let mapped = scalar.properties.uppercaseMapping.unicodeScalars
        return mapped.count == 1 ? mapped.first!.value : value
    }
}
