import Foundation
import Jinja
import Testing

/// Runs the built `flexpert` executable, which sits beside the test bundle.
private func runFlexpert(_ arguments: [String]) throws -> (status: Int32, output: String, error: String) {
    let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("flexpert")
    let process = Process()
    process.executableURL = binary
    process.arguments = arguments
    let output = Pipe(), error = Pipe()
    process.standardOutput = output
    process.standardError = error
    try process.run()
    let outputData = output.fileHandleForReading.readDataToEndOfFile()
    let errorData = error.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: outputData, as: UTF8.self), String(decoding: errorData, as: UTF8.self))
}

/// `swift test` builds the executable beside the test bundle; if it is missing these tests fail.
@Suite struct CommandLineTests {
    @Test func generateJSONMatchesTheFixture() throws {
        let folder = FixturePaths.model("qwen2_moe")
        let reference = try ModelParityTests.reference(folder)
        let prompt = reference.prompts[1]
        let result = try runFlexpert(["generate", "--model", folder, "--prompt-ids", prompt.map(String.init).joined(separator: ","),
                                      "--max-tokens", "8", "--logprobs", "3", "--json"])
        #expect(result.status == 0, "\(result.error)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any])
        #expect(object["prompt_token_ids"] as? [Int] == prompt)
        #expect(object["token_ids"] as? [Int] == reference.tokens[1])
        let logprobs = try #require(object["logprobs"] as? [[[String: Any]]])
        #expect(logprobs.count == 8 && logprobs.allSatisfy { $0.count == 3 })
        #expect(logprobs[0][0]["token_id"] as? Int == reference.tokens[1][0], "the greedy token has the highest logprob")
        #expect(object["text"] is String)
    }

    @Test func eplbPrintsTheReferencePlacement() throws {
        let input = FileManager.default.temporaryDirectory.appendingPathComponent("eplb-\(UUID().uuidString).json")
        defer { try? FileManager.default.removeItem(at: input) }
        try Data(#"{"weight":[[90,132,40,61,104,165,39,4,73,56,183,86],[20,107,104,64,19,197,187,157,172,86,16,27]],"num_replicas":16,"num_groups":4,"num_nodes":2,"num_gpus":8}"#.utf8)
            .write(to: input)
        let result = try runFlexpert(["eplb", "--input", input.path])
        #expect(result.status == 0, "\(result.error)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any])
        #expect(object["physical_to_logical_map"] as? [[Int]] == [[5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1],
                                                                 [7, 10, 6, 8, 6, 11, 8, 9, 2, 4, 5, 1, 5, 0, 3, 1]])
        #expect((object["logical_to_physical_map"] as? [[[Int]]])?[0][1] == [15, 13])
        #expect((object["logical_count"] as? [[Int]])?[1] == [1, 2, 1, 1, 1, 2, 2, 1, 2, 1, 1, 1])

        try Data(#"{"weight":[[1,2,3]],"num_replicas":2,"num_groups":1,"num_nodes":1,"num_gpus":1}"#.utf8).write(to: input)
        let refused = try runFlexpert(["eplb", "--input", input.path])
        #expect(refused.status != 0 && refused.error.contains("num_replicas"))
    }

    @Test func tokenizeAndDetokenizeRoundTrip() throws {
        let folder = FixturePaths.model("tokenizer")
        let tokenized = try runFlexpert(["tokenize", "--model", folder, "--text", "Hello, 世界!", "--json"])
        let ids = try #require((try JSONSerialization.jsonObject(with: Data(tokenized.output.utf8)) as? [String: Any])?["ids"] as? [Int])
        let text = try runFlexpert(["detokenize", "--model", folder, "--ids", ids.map(String.init).joined(separator: ",")])
        #expect(text.output == "Hello, 世界!\n")
    }

    @Test func badCheckpointExitsNonZeroWithTheReason() throws {
        let result = try runFlexpert(["generate", "--model", FixturePaths.root + "/tokenizer", "--prompt-ids", "1,2"])
        #expect(result.status != 0)
        #expect(result.error.contains("config.json"))
        let usage = try runFlexpert(["generate", "--model", FixturePaths.model("olmoe")])
        #expect(usage.status != 0)
        #expect(usage.error.contains("--prompt"))
    }
}

/// `flexpert tokenize --messages` gives the prompt and ids transformers' `apply_chat_template` gives.
@Suite struct TokenizeMessagesCommandTests {
    @Test(arguments: [26, 27, 28, 29])
    func messagesRenderAndTokenizeAsTransformersDoes(caseIndex: Int) throws {
        let chat = FixturePaths.root + "/chat"
        // Read and written by Jinja's JSON, which keeps key order, as the fixture's bytes depend on it.
        guard case .object(let root)? = JSON.parse(try String(contentsOfFile: chat + "/templates/vectors.json", encoding: .utf8)),
              case .array(let cases)? = root["cases"], case .object(let vector) = cases[caseIndex] else {
            Issue.record("vectors.json does not parse")
            return
        }
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("flexpert-tokenize-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let messages = folder.appendingPathComponent("messages.json"), tools = folder.appendingPathComponent("tools.json")
        try Data(try JSON.string(try #require(vector["messages"])).utf8).write(to: messages)
        var arguments = ["tokenize", "--model", chat + "/tokenizers/" + (vector["tokenizer"]?.text ?? ""),
                         "--messages", messages.path, "--chat-template", chat + "/templates/" + (vector["template"]?.text ?? ""), "--json"]
        if let list = vector["tools"], case .array = list {
            try Data(try JSON.string(list).utf8).write(to: tools)
            arguments += ["--tools", tools.path]
        }
        if vector["add_generation_prompt"]?.isTrue == true { arguments.append("--add-generation-prompt") }
        let result = try runFlexpert(arguments)
        #expect(result.status == 0, "\(result.error)")
        guard case .object(let printed)? = JSON.parse(result.output) else {
            Issue.record("tokenize printed no JSON: \(result.output)")
            return
        }
        #expect(Array((printed["prompt"]?.text ?? "").unicodeScalars) == Array((vector["rendered"]?.text ?? "-").unicodeScalars))
        #expect(try JSON.string(printed["ids"] ?? .none) == (try JSON.string(vector["ids"] ?? .none)))
    }

    @Test func aTemplateThatRefusesTheConversationSaysWhy() throws {
        let chat = FixturePaths.root + "/chat"
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("flexpert-refused-\(UUID().uuidString).json")
        defer { try? FileManager.default.removeItem(at: folder) }
        try Data(#"[{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]"#.utf8).write(to: folder)
        let result = try runFlexpert(["tokenize", "--model", chat + "/tokenizers/mixtral", "--messages", folder.path,
                                      "--chat-template", chat + "/templates/mixtral-8x7b-instruct.jinja"])
        #expect(result.status != 0)
        #expect(result.error.contains("alternate"), "\(result.error)")
    }
}
