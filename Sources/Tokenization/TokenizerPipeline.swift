import Foundation

/// Text normalisation before pre-tokenization, as `tokenizer.json`'s `normalizer` says; it runs
/// on each piece of text between added tokens.
enum Normalizer: Sendable {
    case nfc, nfkc, nfd, nfkd
    case lowercase
    /// Prepends to a non-empty piece (SentencePiece's legacy `▁`).
    case prepend(String)
    case replace(Replacement)
    case strip(leading: Bool, trailing: Bool)
    case sequence([Normalizer])

    init?(_ spec: Any?, file: String) throws {
        guard let spec = spec as? [String: Any] else { return nil }
        switch spec["type"] as? String {
        case "NFC": self = .nfc
        case "NFKC": self = .nfkc
        case "NFD": self = .nfd
        case "NFKD": self = .nfkd
        case "Lowercase": self = .lowercase
        case "Prepend":
            guard let text = spec["prepend"] as? String else { throw TokenizationError.badFile(file: file, reason: "Prepend without 'prepend'") }
            self = .prepend(text)
        case "Replace": self = .replace(try Replacement(spec, file: file))
        case "Strip": self = .strip(leading: spec["strip_left"] as? Bool ?? true, trailing: spec["strip_right"] as? Bool ?? true)
        case "Sequence":
            let parts = try (spec["normalizers"] as? [Any] ?? []).compactMap { try Normalizer($0, file: file) }
            self = .sequence(parts)
        default:
            throw TokenizationError.unsupported(file: file, component: "normalizer", detail: "\(spec["type"] ?? "?")")
        }
    }

    func apply(_ text: String) -> String {
        switch self {
        case .nfc: text.precomposedStringWithCanonicalMapping
        case .nfkc: text.precomposedStringWithCompatibilityMapping
        case .nfd: text.decomposedStringWithCanonicalMapping
        case .nfkd: text.decomposedStringWithCompatibilityMapping
        case .lowercase: text.lowercased()
        case .prepend(let prefix): text.isEmpty ? text : prefix + text
        case .replace(let replacement): replacement.apply(text)
        case .strip(let leading, let trailing):
            String(String.UnicodeScalarView(Self.strip(Array(text.unicodeScalars), leading: leading, trailing: trailing)))
        case .sequence(let parts): parts.reduce(text) { $1.apply($0) }
        }
    }

    private static func strip(_ scalars: [Unicode.Scalar], leading: Bool, trailing: Bool) -> ArraySlice<Unicode.Scalar> {
        var start = 0, end = scalars.count
        if leading { while start < end, scalars[start].properties.isWhitespace { start += 1 } }
        if trailing { while end > start, scalars[end - 1].properties.isWhitespace { end -= 1 } }
        return scalars[start..<end]
    }
}

/// `Replace`'s pattern (a literal string or a regular expression) and its content, as the
/// normalizer and the decoder of that name use it.
struct Replacement: Sendable {
    enum Target: Sendable {
        case literal([UInt32])
        case pattern(Pattern)
    }

    let target: Target
    let content: String

    init(_ spec: [String: Any], file: String) throws {
        guard let pattern = spec["pattern"] as? [String: Any], let content = spec["content"] as? String else {
            throw TokenizationError.badFile(file: file, reason: "Replace needs 'pattern' and 'content'")
        }
        if let literal = pattern["String"] as? String {
            target = .literal(literal.unicodeScalars.map(\.value))
        } else if let regex = pattern["Regex"] as? String {
            target = .pattern(try Pattern(regex))
        } else {
            throw TokenizationError.badFile(file: file, reason: "Replace pattern is neither String nor Regex")
        }
        self.content = content
    }

    func apply(_ text: String) -> String {
        let scalars = text.unicodeScalars.map(\.value)
        var result = String.UnicodeScalarView()
        var position = 0
        while position < scalars.count {
            var end: Int?
            switch target {
            case .literal(let literal):
                if !literal.isEmpty, position + literal.count <= scalars.count, scalars[position..<position + literal.count].elementsEqual(literal) {
                    end = position + literal.count
                }
            case .pattern(let pattern):
                if let matched = pattern.matchEnd(scalars, at: position), matched > position { end = matched }
            }
            if let end {
                result.append(contentsOf: content.unicodeScalars)
                position = end
            } else {
                result.append(Unicode.Scalar(scalars[position])!)
                position += 1
            }
        }
        return String(result)
    }
}

/// Pre-tokenization: splitting text into words, and mapping their bytes to byte-level scalars
/// when the pipeline is byte-level.
indirect enum PreTokenizer: Sendable {
    /// `Split`: the pattern's matches and the text between them, as `behavior` says.
    case split(Splitter, SplitBehavior, inverts: Bool)
    /// `ByteLevel`: optional GPT-2 split, then bytes to scalars.
    case byteLevel(addsPrefixSpace: Bool, split: Pattern?)
    /// `Metaspace`: spaces become `replacement`, which is prepended (always, or only to the
    /// start of the text) and which starts each word when `splits`.
    case metaspace(replacement: UInt32, prepend: PrependScheme, splits: Bool)
    /// `Digits`: digits apart from the rest, each alone or in runs.
    case digits(individually: Bool)
    /// `WhitespaceSplit` (drops whitespace) and `Whitespace` (`\w+|[^\w\s]+`).
    case whitespaceSplit
    case whitespace
    case sequence([PreTokenizer])

    enum PrependScheme: Sendable { case always, first, never }

    init?(_ spec: Any?, file: String) throws {
        guard let spec = spec as? [String: Any] else { return nil }
        switch spec["type"] as? String {
        case "Split":
            let splitter: Splitter
            if let pattern = spec["pattern"] as? [String: Any], let regex = pattern["Regex"] as? String {
                splitter = .pattern(try Pattern(regex))
            } else if let pattern = spec["pattern"] as? [String: Any], let literal = pattern["String"] as? String {
                splitter = .literal(literal.unicodeScalars.map(\.value))
            } else {
                throw TokenizationError.badFile(file: file, reason: "Split pattern is neither Regex nor String")
            }
            let name = spec["behavior"] as? String ?? "Isolated"
            guard let behavior = SplitBehavior(rawValue: name) else {
                throw TokenizationError.unsupported(file: file, component: "Split behavior", detail: name)
            }
            self = .split(splitter, behavior, inverts: spec["invert"] as? Bool ?? false)
        case "ByteLevel":
            let usesRegex = spec["use_regex"] as? Bool ?? true
            self = .byteLevel(addsPrefixSpace: spec["add_prefix_space"] as? Bool ?? false,
                              split: usesRegex ? try Pattern(ByteLevel.gpt2Pattern) : nil)
        case "Metaspace":
            let replacement = (spec["replacement"] as? String)?.unicodeScalars.first?.value ?? 0x2581
            let scheme: PrependScheme
            switch spec["prepend_scheme"] as? String {
            case "always"?: scheme = .always
            case "first"?: scheme = .first
            case "never"?: scheme = .never
            case nil: scheme = (spec["add_prefix_space"] as? Bool ?? true) ? .always : .never
            case let other?: throw TokenizationError.unsupported(file: file, component: "Metaspace prepend_scheme", detail: other)
            }
            self = .metaspace(replacement: replacement, prepend: scheme, splits: spec["split"] as? Bool ?? true)
        case "Digits":
            self = .digits(individually: spec["individual_digits"] as? Bool ?? false)
        case "WhitespaceSplit":
            self = .whitespaceSplit
        case "Whitespace":
            self = .whitespace
        case "Sequence":
            self = .sequence(try (spec["pretokenizers"] as? [Any] ?? []).compactMap { try PreTokenizer($0, file: file) })
        default:
            throw TokenizationError.unsupported(file: file, component: "pre_tokenizer", detail: "\(spec["type"] ?? "?")")
        }
    }

    /// Words of `text` as the BPE model's characters. `startsText`: whether this piece begins
    /// the input (after no added token), for Metaspace's `first` scheme.
    func words(_ text: String, startsText: Bool) -> [String] {
        var pieces = [Array(text.unicodeScalars.map(\.value))]
        apply(to: &pieces, startsText: startsText)
        return pieces.filter { !$0.isEmpty }.map { piece in
            var word = String.UnicodeScalarView()
            for value in piece { word.append(Unicode.Scalar(value)!) }
            return String(word)
        }
    }

    /// `Whitespace`'s split, compiled once.
    private static let whitespacePattern = try! Pattern(#"\w+|[^\w\s]+"#)

    private func apply(to pieces: inout [[UInt32]], startsText: Bool) {
        switch self {
        case .split(let splitter, let behavior, let inverts):
            pieces = pieces.flatMap { piece in
                behavior.pieces(piece, delimiters: splitter.matches(piece), inverted: inverts)
            }
        case .byteLevel(let addsPrefixSpace, let split):
            if addsPrefixSpace, let first = pieces.first, first.first != 0x20 { pieces[0].insert(0x20, at: 0) }
            if let split {
                pieces = pieces.flatMap { piece in split.split(piece).map { Array(piece[$0]) } }
            }
            pieces = pieces.map { piece in
                var word: [UInt32] = []
                for value in piece {
                    for byte in String(Unicode.Scalar(value)!).utf8 { word.append(ByteLevel.scalarForByte[Int(byte)]) }
                }
                return word
            }
        case .metaspace(let replacement, let prepend, let splits):
            pieces = pieces.enumerated().flatMap { index, piece -> [[UInt32]] in
                var replaced = piece.map { $0 == 0x20 ? replacement : $0 }
                let prepends = prepend == .always || (prepend == .first && index == 0 && startsText)
                if prepends, replaced.first != replacement { replaced.insert(replacement, at: 0) }
                guard splits else { return [replaced] }
                let matches = replaced.indices.filter { replaced[$0] == replacement }.map { $0..<($0 + 1) }
                return SplitBehavior.mergedWithNext.pieces(replaced, delimiters: matches, inverted: false)
            }
        case .digits(let individually):
            pieces = pieces.flatMap { piece -> [[UInt32]] in
                let digits = piece.indices.filter { Self.isNumeric(piece[$0]) }.map { $0..<($0 + 1) }
                return (individually ? SplitBehavior.isolated : .contiguous).pieces(piece, delimiters: digits, inverted: false)
            }
        case .whitespaceSplit:
            pieces = pieces.flatMap { piece in
                piece.split { ScalarSet.isWhitespace($0) }.map(Array.init)
            }
        case .whitespace:
            pieces = pieces.flatMap { piece in
                Self.whitespacePattern.split(piece).map { Array(piece[$0]) }.filter { !$0.allSatisfy(ScalarSet.isWhitespace) }
            }
        case .sequence(let parts):
            for part in parts { part.apply(to: &pieces, startsText: startsText) }
        }
    }

    /// Rust's `char::is_numeric`: the Nd, Nl and No categories.
    private static func isNumeric(_ value: UInt32) -> Bool { ScalarSet.isNumber(value) }
}

/// What a `Split` looks for.
enum Splitter: Sendable {
    case pattern(Pattern)
    case literal([UInt32])

    /// Non-overlapping matches, leftmost first; empty matches are none.
    func matches(_ text: [UInt32]) -> [Range<Int>] {
        var found: [Range<Int>] = []
        var position = 0
        while position < text.count {
            var end: Int?
            switch self {
            case .pattern(let pattern):
                if let matched = pattern.matchEnd(text, at: position), matched > position { end = matched }
            case .literal(let literal):
                if !literal.isEmpty, position + literal.count <= text.count, text[position..<position + literal.count].elementsEqual(literal) {
                    end = position + literal.count
                }
            }
            if let end {
                found.append(position..<end)
                position = end
            } else {
                position += 1
            }
        }
        return found
    }
}

/// `tokenizers`' `SplitDelimiterBehavior`: what becomes of the delimiters a split finds.
enum SplitBehavior: String, Sendable {
    case removed = "Removed"
    case isolated = "Isolated"
    case mergedWithPrevious = "MergedWithPrevious"
    case mergedWithNext = "MergedWithNext"
    case contiguous = "Contiguous"

    /// The pieces of `text` given the ranges a split matched. With `inverted`, the matches are
    /// the words and the text between them the delimiters.
    func pieces(_ text: [UInt32], delimiters ranges: [Range<Int>], inverted: Bool) -> [[UInt32]] {
        // Every stretch of the text, marked as delimiter or not.
        var stretches: [(Range<Int>, Bool)] = []
        var position = 0
        for range in ranges {
            if position < range.lowerBound { stretches.append((position..<range.lowerBound, inverted)) }
            stretches.append((range, !inverted))
            position = range.upperBound
        }
        if position < text.count { stretches.append((position..<text.count, inverted)) }
        var result: [Range<Int>] = []
        switch self {
        case .removed:
            result = stretches.filter { !$0.1 }.map(\.0)
        case .isolated:
            result = stretches.map(\.0)
        case .mergedWithPrevious:
            var previousWasWord = false
            for (range, isDelimiter) in stretches {
                if isDelimiter, previousWasWord, let last = result.popLast() {
                    result.append(last.lowerBound..<range.upperBound)
                } else {
                    result.append(range)
                }
                previousWasWord = !isDelimiter
            }
        case .mergedWithNext:
            var pendingDelimiter: Range<Int>?
            for (range, isDelimiter) in stretches {
                if isDelimiter {
                    if let pending = pendingDelimiter { result.append(pending) }
                    pendingDelimiter = range
                } else if let pending = pendingDelimiter {
                    result.append(pending.lowerBound..<range.upperBound)
                    pendingDelimiter = nil
                } else {
                    result.append(range)
                }
            }
            if let pending = pendingDelimiter { result.append(pending) }
        case .contiguous:
            var previousWasDelimiter = false
            for (range, isDelimiter) in stretches {
                if isDelimiter, previousWasDelimiter, let last = result.popLast() {
                    result.append(last.lowerBound..<range.upperBound)
                } else {
                    result.append(range)
                }
                previousWasDelimiter = isDelimiter
            }
        }
        return result.filter { !$0.isEmpty }.map { Array(text[$0]) }
    }
}

/// Special tokens added around an encoded sequence (`TemplateProcessing`, single sequences).
struct PostProcessor: Sendable {
    var prefix: [Int] = []
    var suffix: [Int] = []

    init(_ spec: Any?, file: String) throws {
        guard let spec = spec as? [String: Any] else { return }
        switch spec["type"] as? String {
        case "ByteLevel": return
        case "Sequence":
            for part in spec["processors"] as? [Any] ?? [] {
                let processor = try PostProcessor(part, file: file)
                prefix += processor.prefix
                suffix += processor.suffix
            }
        case "TemplateProcessing":
            let tokens = spec["special_tokens"] as? [String: Any] ?? [:]
            var seenSequence = false
            for item in spec["single"] as? [[String: Any]] ?? [] {
                if item["Sequence"] != nil {
                    seenSequence = true
                } else if let special = item["SpecialToken"] as? [String: Any], let name = special["id"] as? String,
                          let entry = tokens[name] as? [String: Any], let ids = entry["ids"] as? [Int] {
                    if seenSequence { suffix += ids } else { prefix += ids }
                } else {
                    throw TokenizationError.badFile(file: file, reason: "post_processor template item \(item)")
                }
            }
        default:
            throw TokenizationError.unsupported(file: file, component: "post_processor", detail: "\(spec["type"] ?? "?")")
        }
    }
}
