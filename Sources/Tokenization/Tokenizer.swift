import Foundation
import Jinja

/// A Hugging Face `tokenizer.json` BPE tokenizer, byte-level (GPT-2, Qwen, Llama 3, DeepSeek,
/// GPT-OSS) or SentencePiece-style (Llama 2, Mistral, Mixtral: `▁` for spaces, `<0xNN>` byte
/// fallback): added tokens, normalizer, pre-tokenizer, BPE model, post-processor and decoder,
/// each as `tokenizers` runs it.
///
/// Ids and decoded text equal those of the `tokenizers` library (checked against vectors made by
/// `Scripts/make-tokenizer.py` and `Scripts/make-chat-fixtures.py`).
public struct Tokenizer: Sendable {
    public struct AddedToken: Sendable {
        public let id: Int
        public let content: String
        public let isSpecial: Bool
        let stripsLeft: Bool
        let stripsRight: Bool
        let isSingleWord: Bool
        /// Matched in the normalized text rather than the raw input.
        let isNormalized: Bool
        /// What is matched: the content, normalized when `isNormalized`.
        let pattern: [Unicode.Scalar]
    }

    private let model: BPEModel
    private let normalizer: Normalizer?
    private let preTokenizer: PreTokenizer?
    private let postProcessor: PostProcessor
    private let decoder: Decoder?
    /// By first scalar, longest first, so that the longest added token wins at a position.
    private let rawAddedTokens: [Unicode.Scalar: [AddedToken]]
    private let normalizedAddedTokens: [Unicode.Scalar: [AddedToken]]
    private let addedTokenByID: [Int: AddedToken]
    private let addedTokenByContent: [String: AddedToken]
    public let vocabularySize: Int

    /// Reads `folder/tokenizer.json`.
    public init(folder: String) throws {
        try self.init(file: folder + "/tokenizer.json")
    }

    public init(file path: String) throws {
        let name = (path as NSString).lastPathComponent
        guard let data = FileManager.default.contents(atPath: path) else { throw TokenizationError.missingFile(path: path) }
        guard let spec = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw TokenizationError.badFile(file: name, reason: "not a JSON object")
        }
        guard let modelSpec = spec["model"] as? [String: Any], (modelSpec["type"] as? String ?? "BPE") == "BPE",
              modelSpec["vocab"] is [String: Any], let vocabulary = Self.vocabulary(data) else {
            let type = (spec["model"] as? [String: Any])?["type"] as? String ?? "?"
            throw TokenizationError.unsupported(file: name, component: "model", detail: "\(type) (only BPE with a vocab object)")
        }
        for field in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if let value = modelSpec[field] as? String, !value.isEmpty {
                throw TokenizationError.unsupported(file: name, component: "model", detail: "\(field) '\(value)'")
            }
        }
        var merges: [(String, String)] = []
        for item in modelSpec["merges"] as? [Any] ?? [] {
            if let pair = item as? [String], pair.count == 2 {
                merges.append((pair[0], pair[1]))
            } else if let line = item as? String, let space = line.firstIndex(of: " ") {
                merges.append((String(line[..<space]), String(line[line.index(after: space)...])))
            } else {
                throw TokenizationError.badFile(file: name, reason: "merge \(merges.count) is neither \"a b\" nor [a, b]")
            }
        }
        model = try BPEModel(vocabulary: vocabulary, merges: merges, ignoresMerges: modelSpec["ignore_merges"] as? Bool ?? false,
                             unknownToken: modelSpec["unk_token"] as? String, fusesUnknown: modelSpec["fuse_unk"] as? Bool ?? false,
                             byteFallback: modelSpec["byte_fallback"] as? Bool ?? false, file: name)
        let normalizer = try Normalizer(spec["normalizer"], file: name)
        self.normalizer = normalizer
        preTokenizer = try PreTokenizer(spec["pre_tokenizer"], file: name)
        postProcessor = try PostProcessor(spec["post_processor"], file: name)
        decoder = try Decoder(spec["decoder"], file: name)
        var added: [AddedToken] = []
        for item in spec["added_tokens"] as? [[String: Any]] ?? [] {
            guard let id = item["id"] as? Int, let content = item["content"] as? String, !content.isEmpty else {
                throw TokenizationError.badFile(file: name, reason: "added token without id or content: \(item)")
            }
            let isSpecial = item["special"] as? Bool ?? false
            let isNormalized = item["normalized"] as? Bool ?? !isSpecial
            let pattern = isNormalized ? (normalizer?.apply(content) ?? content) : content
            added.append(AddedToken(id: id, content: content, isSpecial: isSpecial, stripsLeft: item["lstrip"] as? Bool ?? false,
                                    stripsRight: item["rstrip"] as? Bool ?? false, isSingleWord: item["single_word"] as? Bool ?? false,
                                    isNormalized: isNormalized, pattern: Array(pattern.unicodeScalars)))
        }
        let longestFirst = added.filter { !$0.pattern.isEmpty }.sorted { $0.pattern.count > $1.pattern.count }
        rawAddedTokens = Dictionary(grouping: longestFirst.filter { !$0.isNormalized }, by: { $0.pattern[0] })
        normalizedAddedTokens = Dictionary(grouping: longestFirst.filter(\.isNormalized), by: { $0.pattern[0] })
        addedTokenByID = Dictionary(added.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        addedTokenByContent = Dictionary(added.map { ($0.content, $0) }, uniquingKeysWith: { first, _ in first })
        vocabularySize = max(vocabulary.values.max() ?? -1, added.map(\.id).max() ?? -1) + 1
    }

    /// `model.vocab`, read so that tokens equal only as Swift strings (canonically equivalent) stay
    /// apart, as they are in `tokenizers`.
    private static func vocabulary(_ data: Data) -> [ScalarKey: Int]? {
        guard case .object(let root)? = JSON.parse(String(decoding: data, as: UTF8.self)),
              case .object(let model)? = root["model"], case .object(let vocab)? = model["vocab"] else { return nil }
        var vocabulary: [ScalarKey: Int] = [:]
        vocabulary.reserveCapacity(vocab.count)
        for (token, value) in vocab.pairs {
            guard case .int(let id) = value else { return nil }
            vocabulary[ScalarKey(token)] = id
        }
        return vocabulary
    }

    /// The id of a token string (an added token's content or a vocabulary entry).
    public func id(of token: String) -> Int? {
        addedTokenByContent[token]?.id ?? model.idByToken[ScalarKey(token)]
    }

    /// The token string of an id (`convert_ids_to_tokens`).
    public func token(of id: Int) -> String? {
        addedTokenByID[id]?.content ?? model.tokenByID[id]
    }

    public func isSpecial(_ id: Int) -> Bool { addedTokenByID[id]?.isSpecial ?? false }

    /// Token ids of `text`, with the post-processor's special tokens when `addsSpecialTokens`.
    public func encode(_ text: String, addsSpecialTokens: Bool = true) -> [Int] {
        var ids: [Int] = addsSpecialTokens ? postProcessor.prefix : []
        let scalars = Array(text.unicodeScalars)
        for segment in split(scalars[...], on: rawAddedTokens) {
            switch segment {
            case .added(let id):
                ids.append(id)
            case .text(let range):
                let piece = String(String.UnicodeScalarView(scalars[range]))
                let normalized = Array((normalizer?.apply(piece) ?? piece).unicodeScalars)
                var isFirst = range.lowerBound == 0
                for part in split(normalized[...], on: normalizedAddedTokens) {
                    switch part {
                    case .added(let id):
                        ids.append(id)
                    case .text(let partRange):
                        let words = String(String.UnicodeScalarView(normalized[partRange]))
                        encodeWords(words, startsText: isFirst && partRange.lowerBound == 0, into: &ids)
                    }
                    isFirst = false
                }
            }
        }
        if addsSpecialTokens { ids += postProcessor.suffix }
        return ids
    }

    private func encodeWords(_ text: String, startsText: Bool, into ids: inout [Int]) {
        let words: [String]
        if let preTokenizer {
            words = preTokenizer.words(text, startsText: startsText)
        } else {
            words = text.isEmpty ? [] : [text]
        }
        for word in words { model.encode(word: word, into: &ids) }
    }

    /// The text of `ids`. Bytes that do not form valid UTF-8 become U+FFFD, as in `tokenizers`.
    public func decode(_ ids: [Int], skipsSpecialTokens: Bool = false) throws -> String {
        String(decoding: try decodeBytes(ids, skipsSpecialTokens: skipsSpecialTokens), as: UTF8.self)
    }

    /// The bytes of `ids` through the decoder. `continuesText`: the ids follow others of the same
    /// text (a stream's later tokens), so the decoder's steps about the text's start are skipped;
    /// a stream also keeps byte-fallback bytes raw, to complete a character with the next token.
    public func decodeBytes(_ ids: [Int], skipsSpecialTokens: Bool = false, continuesText: Bool = false,
                            keepsRawBytes: Bool = false) throws -> [UInt8] {
        var tokens: [[UInt8]] = []
        tokens.reserveCapacity(ids.count)
        for id in ids {
            if let added = addedTokenByID[id] {
                if skipsSpecialTokens && added.isSpecial { continue }
                tokens.append(Array(added.content.utf8))
            } else if let entry = model.tokenByID[id] {
                tokens.append(Array(entry.utf8))
            } else {
                throw TokenizationError.unknownTokenID(id, vocabularySize: vocabularySize)
            }
        }
        guard let decoder else {
            // `tokenizers` without a decoder joins the tokens with spaces.
            return Array(tokens.joined(separator: [UInt8(ascii: " ")]))
        }
        return decoder.decode(tokens, continuesText: continuesText, keepsRawBytes: keepsRawBytes)
    }

    private enum Segment {
        case text(Range<Int>)
        case added(Int)
    }

    /// `tokenizers`' `AddedVocabulary` split: the leftmost, longest added token at each place, with
    /// the whitespace its `lstrip`/`rstrip` flags take, and not inside a word when `single_word`.
    private func split(_ scalars: ArraySlice<Unicode.Scalar>, on tokens: [Unicode.Scalar: [AddedToken]]) -> [Segment] {
        guard !tokens.isEmpty else { return scalars.isEmpty ? [] : [.text(scalars.indices)] }
        var segments: [Segment] = []
        var textStart = scalars.startIndex
        var position = scalars.startIndex
        func isWordCharacter(_ scalar: Unicode.Scalar) -> Bool {
            scalar.properties.isAlphabetic || scalar.properties.numericType != nil || scalar == "_"
        }
        while position < scalars.endIndex {
            // The candidates at a position are longest first: the first that matches is the match.
            guard let token = (tokens[scalars[position]] ?? []).first(where: { token in
                position + token.pattern.count <= scalars.endIndex
                    && scalars[position..<position + token.pattern.count].elementsEqual(token.pattern)
            }) else {
                position += 1
                continue
            }
            if token.isSingleWord {
                let end = position + token.pattern.count
                if (position > scalars.startIndex && isWordCharacter(scalars[position - 1]))
                    || (end < scalars.endIndex && isWordCharacter(scalars[end])) {
                    // As `tokenizers` discards it: the match stays text, and no shorter token is tried inside it.
                    position = end
                    continue
                }
            }
            var start = position
            var end = position + token.pattern.count
            if token.stripsLeft {
                while start > textStart, scalars[start - 1].properties.isWhitespace { start -= 1 }
            }
            if token.stripsRight {
                while end < scalars.endIndex, scalars[end].properties.isWhitespace { end += 1 }
            }
            if textStart < start { segments.append(.text(textStart..<start)) }
            segments.append(.added(token.id))
            position = end
            textStart = end
        }
        if textStart < scalars.endIndex { segments.append(.text(textStart..<scalars.endIndex)) }
        return segments
    }
}
