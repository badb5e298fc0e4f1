import Foundation

/// A Hugging Face `tokenizer.json` byte-level BPE tokenizer: added tokens, normalizer,
/// pre-tokenizer (Split with a regex, ByteLevel), BPE model, ByteLevel decoder.
///
/// Ids and decoded text equal those of the `tokenizers` library (checked against vectors made by
/// `Scripts/make-tokenizer.py`).
public struct Tokenizer: Sendable {
    public struct AddedToken: Sendable {
        public let id: Int
        public let content: String
        public let isSpecial: Bool
        let stripsLeft: Bool
        let stripsRight: Bool
    }

    private let model: BPEModel
    private let normalizer: Normalizer?
    private let preTokenizer: PreTokenizer
    private let postProcessor: PostProcessor
    /// Longest first, so that the longest added token wins at a position.
    private let addedTokens: [AddedToken]
    private let addedTokenByID: [Int: AddedToken]
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
              let vocabulary = modelSpec["vocab"] as? [String: Int] else {
            throw TokenizationError.unsupported(file: name, component: "model", detail: "only BPE with a vocab object")
        }
        if modelSpec["byte_fallback"] as? Bool == true {
            throw TokenizationError.unsupported(file: name, component: "model", detail: "byte_fallback (SentencePiece-style BPE)")
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
        model = try BPEModel(vocabulary: vocabulary, merges: merges,
                             ignoresMerges: modelSpec["ignore_merges"] as? Bool ?? false, file: name)
        normalizer = try Normalizer(spec["normalizer"], file: name)
        preTokenizer = try PreTokenizer(spec["pre_tokenizer"], file: name)
        postProcessor = try PostProcessor(spec["post_processor"], file: name)
        if let decoder = spec["decoder"] as? [String: Any], decoder["type"] as? String != "ByteLevel" {
            throw TokenizationError.unsupported(file: name, component: "decoder", detail: "\(decoder["type"] ?? "?")")
        }
        var added: [AddedToken] = []
        for item in spec["added_tokens"] as? [[String: Any]] ?? [] {
            guard let id = item["id"] as? Int, let content = item["content"] as? String, !content.isEmpty else {
                throw TokenizationError.badFile(file: name, reason: "added token without id or content: \(item)")
            }
            added.append(AddedToken(id: id, content: content, isSpecial: item["special"] as? Bool ?? false,
                                    stripsLeft: item["lstrip"] as? Bool ?? false, stripsRight: item["rstrip"] as? Bool ?? false))
        }
        addedTokens = added.sorted { $0.content.unicodeScalars.count > $1.content.unicodeScalars.count }
        addedTokenByID = Dictionary(added.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        vocabularySize = max(vocabulary.values.max() ?? -1, added.map(\.id).max() ?? -1) + 1
    }

    /// The id of a token string (an added token's content or a vocabulary entry).
    public func id(of token: String) -> Int? {
        addedTokens.first { $0.content == token }?.id ?? model.idByToken[token]
    }

    public func isSpecial(_ id: Int) -> Bool { addedTokenByID[id]?.isSpecial ?? false }

    /// Token ids of `text`, with the post-processor's special tokens when `addsSpecialTokens`.
    public func encode(_ text: String, addsSpecialTokens: Bool = true) -> [Int] {
        var ids: [Int] = addsSpecialTokens ? postProcessor.prefix : []
        for segment in splitOnAddedTokens(text) {
            switch segment {
            case .added(let id):
                ids.append(id)
            case .text(let piece):
                let normalized = normalizer?.apply(piece) ?? piece
                for word in preTokenizer.words(normalized) { model.encode(word: word, into: &ids) }
            }
        }
        if addsSpecialTokens { ids += postProcessor.suffix }
        return ids
    }

    /// The text of `ids`. Bytes that do not form valid UTF-8 become U+FFFD, as in `tokenizers`.
    public func decode(_ ids: [Int], skipsSpecialTokens: Bool = false) throws -> String {
        String(decoding: try decodeBytes(ids, skipsSpecialTokens: skipsSpecialTokens), as: UTF8.self)
    }

    /// The raw bytes of `ids`, for decoders that must hold back an incomplete UTF-8 sequence.
    public func decodeBytes(_ ids: [Int], skipsSpecialTokens: Bool = false) throws -> [UInt8] {
        var bytes: [UInt8] = []
        for id in ids {
            let token: String
            if let added = addedTokenByID[id] {
                if skipsSpecialTokens && added.isSpecial { continue }
                token = added.content
            } else if let entry = model.tokenByID[id] {
                token = entry
            } else {
                throw TokenizationError.unknownTokenID(id, vocabularySize: vocabularySize)
            }
            bytes += ByteLevel.bytes(of: token) ?? Array(token.utf8)
        }
        return bytes
    }

    private enum Segment {
        case text(String)
        case added(Int)
    }

    private func splitOnAddedTokens(_ text: String) -> [Segment] {
        guard !addedTokens.isEmpty else { return text.isEmpty ? [] : [.text(text)] }
        let scalars = Array(text.unicodeScalars)
        let contents = addedTokens.map { Array($0.content.unicodeScalars) }
        var segments: [Segment] = []
        var textStart = 0
        var position = 0
        func flush(until end: Int) {
            if textStart < end { segments.append(.text(String(String.UnicodeScalarView(scalars[textStart..<end])))) }
        }
        while position < scalars.count {
            var matched: Int?
            for (index, content) in contents.enumerated()
            where position + content.count <= scalars.count && scalars[position..<position + content.count].elementsEqual(content) {
                matched = index
                break
            }
            guard let index = matched else {
                position += 1
                continue
            }
            let token = addedTokens[index]
            var start = position
            var end = position + contents[index].count
            if token.stripsLeft {
                while start > textStart, scalars[start - 1].properties.isWhitespace { start -= 1 }
            }
            if token.stripsRight {
                while end < scalars.count, scalars[end].properties.isWhitespace { end += 1 }
            }
            flush(until: start)
            segments.append(.added(token.id))
            position = end
            textStart = end
        }
        flush(until: scalars.count)
        return segments
    }
}
