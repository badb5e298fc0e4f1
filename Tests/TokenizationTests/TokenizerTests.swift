import Foundation
import Testing
import Jinja
@testable import Tokenization

private let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures/tokenizer").path

private struct Vector: Decodable {
    let pre_tokenizer: String
    let text: String
    let ids: [Int]
    let decoded: String
}

private struct Vectors: Decodable {
    let cases: [Vector]
}

private func loadVectors() throws -> [Vector] {
    let data = try Data(contentsOf: URL(fileURLWithPath: fixtures + "/tokenizer-vectors.json"))
    return try JSONDecoder().decode(Vectors.self, from: data).cases
}

private func file(for preTokenizer: String) -> String {
    preTokenizer == "qwen2" ? fixtures + "/tokenizer.json" : fixtures + "/tokenizer-\(preTokenizer).json"
}

@Suite struct TokenizerTests {
    @Test(arguments: ["qwen2", "gpt2", "llama3", "gpt2-bytelevel"])
    func idsAndTextEqualTheTokenizersLibrary(preTokenizer: String) throws {
        let tokenizer = try Tokenizer(file: file(for: preTokenizer))
        let cases = try loadVectors().filter { $0.pre_tokenizer == preTokenizer }
        #expect(cases.count > 20)
        for vector in cases {
            #expect(tokenizer.encode(vector.text) == vector.ids, "encode \(vector.text.debugDescription)")
            #expect(try tokenizer.decode(vector.ids) == vector.decoded, "decode \(vector.text.debugDescription)")
        }
    }

    @Test func specialTokensAreSingleIDsAndCanBeSkipped() throws {
        let tokenizer = try Tokenizer(folder: fixtures)
        let start = try #require(tokenizer.id(of: "<|im_start|>"))
        let ids = tokenizer.encode("<|im_start|>hi")
        #expect(ids.first == start)
        #expect(tokenizer.isSpecial(start))
        #expect(try tokenizer.decode(ids, skipsSpecialTokens: true) == "hi")
    }

    @Test func unknownIDIsAnError() throws {
        let tokenizer = try Tokenizer(folder: fixtures)
        #expect(throws: TokenizationError.unknownTokenID(999_999, vocabularySize: tokenizer.vocabularySize)) {
            try tokenizer.decode([999_999])
        }
    }

    @Test func chatMLTemplateFromTokenizerConfig() throws {
        let configuration = try TokenizerConfiguration(folder: fixtures)
        let template = try #require(configuration.chatTemplate)
        let message = Value.object(Mapping([("role", .string("user")), ("content", .string("Hello"))]))
        let prompt = try template.render(ChatTemplate.Request(messages: [message], addsGenerationPrompt: true),
                                         specialTokens: configuration.templateVariables)
        #expect(prompt == "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n")
        #expect(configuration.eosToken == "<|im_end|>")
    }

    @Test func unsupportedPatternSyntaxIsRefused() {
        #expect(throws: TokenizationError.self) { try Pattern("(?<name>x)") }
        #expect(throws: TokenizationError.self) { try Pattern("\\p{Greek}") }
        #expect(throws: TokenizationError.self) { try Pattern("a+?") }
    }

    @Test func patternMatchesLeftmostFirstWithBacktracking() throws {
        let pattern = try Pattern(#"\s+(?!\S)|\s+"#)
        let text = Array("a   b".unicodeScalars.map(\.value))
        // "   " before "b": the first branch gives back one space so that the look-ahead holds.
        #expect(pattern.matchEnd(text, at: 1) == 3)
        let digits = try Pattern(#"\p{N}{1,3}"#)
        #expect(digits.split(Array("12345".unicodeScalars.map(\.value))) == [0..<3, 3..<5])
    }
}
