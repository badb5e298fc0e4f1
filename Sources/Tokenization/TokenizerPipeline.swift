import Foundation

/// Text normalisation before pre-tokenization, as `tokenizer.json`'s `normalizer` says.
enum Normalizer: Sendable {
    case nfc
    case nfkc
    case sequence([Normalizer])

    init?(_ spec: Any?, file: String) throws {
        guard let spec = spec as? [String: Any] else { return nil }
        switch spec["type"] as? String {
        case "NFC": self = .nfc
        case "NFKC": self = .nfkc
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
        case .sequence(let parts): parts.reduce(text) { $1.apply($0) }
        }
    }
}

/// Pre-tokenization: splitting text into words, and mapping their bytes to byte-level scalars.
enum PreTokenizer: Sendable {
    /// `Split` with behaviour `Isolated`: matches and the text between them are words.
    case split(Pattern)
    /// `ByteLevel`: optional GPT-2 split, then bytes to scalars.
    case byteLevel(addsPrefixSpace: Bool, split: Pattern?)
    case sequence([PreTokenizer])

    init(_ spec: Any?, file: String) throws {
        guard let spec = spec as? [String: Any] else {
            throw TokenizationError.unsupported(file: file, component: "pre_tokenizer", detail: "none (a byte-level BPE needs ByteLevel)")
        }
        switch spec["type"] as? String {
        case "Split":
            guard let pattern = spec["pattern"] as? [String: Any], let regex = pattern["Regex"] as? String else {
                throw TokenizationError.unsupported(file: file, component: "Split pattern", detail: "only Regex patterns")
            }
            let behavior = spec["behavior"] as? String ?? "Isolated"
            guard behavior == "Isolated", (spec["invert"] as? Bool ?? false) == false else {
                throw TokenizationError.unsupported(file: file, component: "Split", detail: "behavior \(behavior), invert \(spec["invert"] ?? false)")
            }
            self = .split(try Pattern(regex))
        case "ByteLevel":
            let usesRegex = spec["use_regex"] as? Bool ?? true
            self = .byteLevel(addsPrefixSpace: spec["add_prefix_space"] as? Bool ?? false,
                              split: usesRegex ? try Pattern(ByteLevel.gpt2Pattern) : nil)
        case "Sequence":
            self = .sequence(try (spec["pretokenizers"] as? [Any] ?? []).map { try PreTokenizer($0, file: file) })
        default:
            throw TokenizationError.unsupported(file: file, component: "pre_tokenizer", detail: "\(spec["type"] ?? "?")")
        }
    }

    /// Words as byte-level strings, ready for the BPE model.
    func words(_ text: String) -> [String] {
        var pieces = [Array(text.unicodeScalars.map(\.value))]
        var isByteLevel = false
        apply(to: &pieces, isByteLevel: &isByteLevel)
        return pieces.map { piece in
            var word = String.UnicodeScalarView()
            if isByteLevel {
                for value in piece { word.append(Unicode.Scalar(value)!) }
            } else {
                for value in piece { Self.appendByteLevel(of: value, to: &word) }
            }
            return String(word)
        }
    }

    private func apply(to pieces: inout [[UInt32]], isByteLevel: inout Bool) {
        switch self {
        case .split(let pattern):
            pieces = pieces.flatMap { piece in pattern.split(piece).map { Array(piece[$0]) } }
        case .byteLevel(let addsPrefixSpace, let split):
            if addsPrefixSpace, let first = pieces.first, first.first != 0x20 { pieces[0].insert(0x20, at: 0) }
            if let split {
                pieces = pieces.flatMap { piece in split.split(piece).map { Array(piece[$0]) } }
            }
            pieces = pieces.map { piece in
                var word = String.UnicodeScalarView()
                for value in piece { Self.appendByteLevel(of: value, to: &word) }
                return word.map(\.value)
            }
            isByteLevel = true
        case .sequence(let parts):
            for part in parts { part.apply(to: &pieces, isByteLevel: &isByteLevel) }
        }
    }

    private static func appendByteLevel(of value: UInt32, to word: inout String.UnicodeScalarView) {
        for byte in String(Unicode.Scalar(value)!).utf8 {
            word.append(Unicode.Scalar(ByteLevel.scalarForByte[Int(byte)])!)
        }
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
