import Foundation
import Jinja
import Testing
@testable import Tokenization

private let chatFixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures/chat").path

/// Each tokenizer family's own `tokenizer.json` format against the `tokenizers` library, and real
/// chat templates against transformers' `apply_chat_template` (`Scripts/make-chat-fixtures.py`).
@Suite struct FamilyTokenizerTests {
    static let families = ["mixtral", "llama-metaspace", "deepseek-v3", "gpt-oss", "qwen3"]

    private static func json(_ path: String) throws -> Mapping {
        guard case .object(let root)? = JSON.parse(try String(contentsOfFile: path, encoding: .utf8)) else {
            throw CocoaError(.fileReadCorruptFile)
        }
        return root
    }

    private static func ids(_ value: Value?) -> [Int] {
        (value?.elementsForTests ?? []).compactMap { if case .int(let id) = $0 { id } else { nil } }
    }

    /// Added tokens with every flag, overlapping, as the library splits them (`Scripts/make-added-token-cases.py`):
    /// a `single_word` match inside a word stays text, and no shorter token is tried within it.
    @Test func addedTokenFlagsSplitAsTheTokenizersLibrary() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: chatFixtures + "/added-token-cases.json"))
        let fixture = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("added-tokens-\(getpid()).json")
        try JSONSerialization.data(withJSONObject: try #require(fixture["tokenizer"])).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let tokenizer = try Tokenizer(file: file.path)
        let cases = try #require(fixture["cases"] as? [[String: Any]])
        #expect(cases.count > 20)
        for vector in cases {
            let text = try #require(vector["text"] as? String)
            #expect(tokenizer.encode(text, addsSpecialTokens: false) == vector["ids"] as? [Int], "\(text.debugDescription)")
        }
    }

    @Test(arguments: families)
    func idsAndTextEqualTheTokenizersLibrary(family: String) throws {
        let folder = chatFixtures + "/tokenizers/" + family
        let vectors = try Self.json(folder + "/vectors.json")
        var tokenizers: [String: Tokenizer] = [:]
        func tokenizer(_ file: Value?) throws -> Tokenizer {
            let name = file?.text ?? "tokenizer.json"
            if let cached = tokenizers[name] { return cached }
            let loaded = try Tokenizer(file: folder + "/" + name)
            tokenizers[name] = loaded
            return loaded
        }
        let encodes = vectors["encode"]?.elementsForTests ?? []
        #expect(encodes.count > 20)
        for case .object(let vector) in encodes {
            let text = vector["text"]?.text ?? ""
            let addsSpecial = vector["add_special_tokens"]?.isTrue ?? false
            let got = try tokenizer(vector["file"]).encode(text, addsSpecialTokens: addsSpecial)
            #expect(got == Self.ids(vector["ids"]), "\(family) \(vector["file"]?.text ?? "") encode \(text.debugDescription) special \(addsSpecial)")
        }
        for case .object(let vector) in vectors["decode"]?.elementsForTests ?? [] {
            let ids = Self.ids(vector["ids"])
            let skips = vector["skip_special_tokens"]?.isTrue ?? false
            let got = try tokenizer(vector["file"]).decode(ids, skipsSpecialTokens: skips)
            #expect(Array(got.unicodeScalars) == Array((vector["text"]?.text ?? "").unicodeScalars), "\(family) decode \(ids) skip \(skips)")
        }
    }

    @Test(arguments: families)
    func streamedTokensGiveTheWholeText(family: String) throws {
        let folder = chatFixtures + "/tokenizers/" + family
        let tokenizer = try Tokenizer(file: folder + "/tokenizer.json")
        let vectors = try Self.json(folder + "/vectors.json")
        for case .object(let vector) in vectors["decode"]?.elementsForTests ?? [] where vector["file"] == nil || vector["file"]?.text == "tokenizer.json" {
            let ids = Self.ids(vector["ids"]).filter { !tokenizer.isSpecial($0) }
            let whole = try tokenizer.decode(ids, skipsSpecialTokens: true)
            // Token by token, as a stream decodes: only the first token starts the text.
            var bytes: [UInt8] = []
            for (index, id) in ids.enumerated() {
                bytes += try tokenizer.decodeBytes([id], skipsSpecialTokens: true, continuesText: index > 0, keepsRawBytes: true)
            }
            if String(validating: bytes, as: UTF8.self) != nil {
                #expect(bytes == Array(whole.utf8), "\(family) \(ids)")
            }
        }
    }

    @Test func realTemplatesRenderAsTransformersDoes() throws {
        let root = try Self.json(chatFixtures + "/templates/vectors.json")
        let cases = root["cases"]?.elementsForTests ?? []
        let now = try #require(Self.localTime(root["strftime_now"]?.text ?? ""))
        #expect(cases.count > 40)
        var templates: [String: ChatTemplate] = [:]
        var tokenizers: [String: Tokenizer] = [:]
        for case .object(let vector) in cases {
            let file = vector["template"]?.text ?? ""
            let label = "\(file): \(vector["name"]?.text ?? "")"
            if templates[file] == nil {
                templates[file] = try ChatTemplate(source: String(contentsOfFile: chatFixtures + "/templates/" + file, encoding: .utf8),
                                                   origin: file)
            }
            var variables: [(String, Value)] = []
            if case .object(let kwargs)? = vector["kwargs"] { variables = kwargs.pairs }
            var special: [(String, Value)] = []
            if case .object(let tokens)? = vector["special_tokens"] { special = tokens.pairs }
            let tools: [Value]? = vector["tools"]?.elementsForTests
            let request = ChatTemplate.Request(
                messages: vector["messages"]?.elementsForTests ?? [], tools: tools,
                addsGenerationPrompt: vector["add_generation_prompt"]?.isTrue ?? false,
                continuesFinalMessage: vector["continue_final_message"]?.isTrue ?? false, variables: variables)
            let result = Result { try templates[file]!.render(request, specialTokens: special, now: now) }
            switch (result, vector["rendered"]) {
            case (.success(let rendered), .string(let expected)?):
                #expect(Array(rendered.unicodeScalars) == Array(expected.unicodeScalars), "\(label)")
                if case .string(let family)? = vector["tokenizer"], vector["ids"]?.elementsForTests != nil {
                    if tokenizers[family] == nil { tokenizers[family] = try Tokenizer(folder: chatFixtures + "/tokenizers/" + family) }
                    #expect(tokenizers[family]!.encode(rendered, addsSpecialTokens: false) == Self.ids(vector["ids"]), "\(label) ids")
                }
            case (.failure(let error), .string?):
                Issue.record("\(label) failed: \(error)")
            case (.success(let rendered), _):
                Issue.record("\(label) rendered \(rendered.debugDescription), but transformers refused it: \(vector["error"]?.text ?? "")")
            case (.failure(let error), _):
                if let expected = vector["error"]?.text, case let refusal as ChatTemplate.RenderError = error {
                    #expect(expected.contains(refusal.description) || refusal.description.contains(expected), "\(label)")
                }
            }
        }
    }
}

extension FamilyTokenizerTests {
    /// Seconds since 1970 of a local `YYYY-MM-DDTHH:MM:SS`, the clock the fixtures pinned `strftime_now` to.
    static func localTime(_ text: String) -> Double? {
        let parts = text.split(whereSeparator: { "-T:".contains($0) }).compactMap { Int32($0) }
        guard parts.count == 6 else { return nil }
        var time = tm()
        time.tm_year = parts[0] - 1900
        time.tm_mon = parts[1] - 1
        time.tm_mday = parts[2]
        time.tm_hour = parts[3]
        time.tm_min = parts[4]
        time.tm_sec = parts[5]
        time.tm_isdst = -1
        return Double(mktime(&time))
    }
}

extension Value {
    var elementsForTests: [Value]? {
        switch self {
        case .array(let items), .tuple(let items): items
        default: nil
        }
    }
}
