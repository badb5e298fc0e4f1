import BenchServe
import Foundation
import Testing

/// Bad requests get OpenAI's error body with a fitting status, and the server keeps serving.
struct BadInputTests {
    struct Case: Sendable, CustomTestStringConvertible {
        let name: String
        let path: String
        let body: String
        let status: Int
        let param: String?
        /// Words the error message must contain, where its reason matters.
        var says: String?
        var testDescription: String { name }
    }

    static let cases: [Case] = [
        Case(name: "malformed JSON", path: "/v1/completions", body: #"{"prompt": "hi""#, status: 400, param: nil),
        Case(name: "not an object", path: "/v1/completions", body: #"[1, 2]"#, status: 400, param: nil),
        Case(name: "missing prompt", path: "/v1/completions", body: #"{"max_tokens": 3}"#, status: 400, param: "prompt"),
        Case(name: "prompt of the wrong type", path: "/v1/completions", body: #"{"prompt": {"a": 1}}"#, status: 400, param: "prompt"),
        Case(name: "max_tokens as a string", path: "/v1/completions", body: #"{"prompt": "hi", "max_tokens": "3"}"#, status: 400, param: "max_tokens"),
        Case(name: "negative max_tokens", path: "/v1/completions", body: #"{"prompt": "hi", "max_tokens": -5}"#, status: 400, param: "max_tokens"),
        Case(name: "absurd max_tokens", path: "/v1/completions", body: #"{"prompt": "hi", "max_tokens": 9223372036854775807}"#, status: 400, param: "max_tokens"),
        Case(name: "prompt beyond --max-model-len", path: "/v1/completions", body: #"{"prompt": \#(Array(repeating: 5, count: 64))}"#, status: 400, param: "prompt"),
        Case(name: "unknown model", path: "/v1/completions", body: #"{"model": "gpt-9", "prompt": "hi"}"#, status: 404, param: "model"),
        Case(name: "token id outside the vocabulary", path: "/v1/completions", body: #"{"prompt": [1, 2000]}"#, status: 400, param: "prompt"),
        Case(name: "negative token id", path: "/v1/completions", body: #"{"prompt": [[1], [-1]]}"#, status: 400, param: "prompt"),
        Case(name: "empty prompt list", path: "/v1/completions", body: #"{"prompt": []}"#, status: 400, param: "prompt"),
        Case(name: "empty token prompt", path: "/v1/completions", body: #"{"prompt": [[]]}"#, status: 400, param: "prompt"),
        Case(name: "negative temperature", path: "/v1/completions", body: #"{"prompt": "hi", "temperature": -1}"#, status: 400, param: "temperature"),
        Case(name: "top_p zero", path: "/v1/completions", body: #"{"prompt": "hi", "top_p": 0}"#, status: 400, param: "top_p"),
        Case(name: "n zero", path: "/v1/completions", body: #"{"prompt": "hi", "n": 0}"#, status: 400, param: "n"),
        Case(name: "too many logprobs", path: "/v1/completions", body: #"{"prompt": "hi", "logprobs": 1000}"#, status: 400, param: "logprobs"),
        Case(name: "min_tokens above max_tokens", path: "/v1/completions", body: #"{"prompt": "hi", "max_tokens": 2, "min_tokens": 3}"#, status: 400, param: "min_tokens"),
        Case(name: "stop token outside the vocabulary", path: "/v1/completions", body: #"{"prompt": "hi", "stop_token_ids": [99999]}"#, status: 400, param: "stop_token_ids"),
        Case(name: "stream_options without stream", path: "/v1/completions", body: #"{"prompt": "hi", "stream_options": {"include_usage": true}}"#, status: 400, param: "stream_options"),
        Case(name: "empty messages", path: "/v1/chat/completions", body: #"{"messages": []}"#, status: 400, param: "messages"),
        Case(name: "message without role", path: "/v1/chat/completions", body: #"{"messages": [{"content": "hi"}]}"#, status: 400, param: "messages[0].role"),
        // Any other role reaches the template, as in vLLM (Llama's `ipython`); an empty one is no role.
        Case(name: "empty role", path: "/v1/chat/completions", body: #"{"messages": [{"role": "", "content": "hi"}]}"#, status: 400, param: "messages[0].role"),
        Case(name: "image content", path: "/v1/chat/completions", body: #"{"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}"#, status: 400, param: "messages[0].content[0]"),
        Case(name: "chat with an unknown model", path: "/v1/chat/completions", body: #"{"model": "x", "messages": [{"role": "user", "content": "hi"}]}"#, status: 404, param: "model"),
        Case(name: "unsupported penalty", path: "/v1/chat/completions", body: #"{"messages": [{"role": "user", "content": "hi"}], "presence_penalty": 1}"#, status: 400, param: "presence_penalty"),
        Case(name: "body over the limit", path: "/v1/completions", body: #"{"prompt": "\#(String(repeating: "a", count: 5000))"}"#, status: 413, param: nil),
        Case(name: "unknown path", path: "/v1/embeddings", body: "{}", status: 404, param: nil),
        Case(name: "a key given twice", path: "/v1/completions", body: #"{"prompt": "hi", "max_tokens": 2, "max_tokens": 3000}"#,
             status: 400, param: "max_tokens", says: "more than once"),
        Case(name: "a key given twice, escaped", path: "/v1/completions", body: #"{"prompt": "hi", "\u0070rompt": [1]}"#,
             status: 400, param: "prompt"),
        Case(name: "nesting too deep", path: "/v1/completions", body: String(repeating: "[", count: 1000), status: 400, param: nil),
        Case(name: "an absurd temperature", path: "/v1/completions", body: #"{"prompt": "hi", "temperature": 1e300}"#,
             status: 400, param: "temperature", says: "[0, 1000000]"),
        Case(name: "more choices than allowed", path: "/v1/completions",
             body: #"{"prompt": [\#((0..<100).map { _ in "\"a\"" }.joined(separator: ","))], "n": 16}"#,
             status: 400, param: "n", says: "1024"),
        Case(name: "auto tools without a parser", path: "/v1/chat/completions",
             body: #"{"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", "function": {"name": "f"}}]}"#,
             status: 400, param: "tool_choice", says: "--enable-auto-tool-choice"),
        Case(name: "a tool without a name", path: "/v1/chat/completions",
             body: #"{"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", "function": {}}]}"#,
             status: 400, param: "tools[0]"),
        Case(name: "a named tool choice not among the tools", path: "/v1/chat/completions",
             body: #"{"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": {"type": "function", "function": {"name": "g"}}}"#,
             status: 400, param: "tool_choice"),
        Case(name: "tool call arguments that are not JSON", path: "/v1/chat/completions",
             body: #"{"messages": [{"role": "assistant", "content": null, "tool_calls": [{"id": "a", "type": "function", "function": {"name": "f", "arguments": "{"}}]}]}"#,
             status: 400, param: "messages[0].tool_calls[0].function.arguments"),
        Case(name: "both continue_final_message and add_generation_prompt", path: "/v1/chat/completions",
             body: #"{"messages": [{"role": "assistant", "content": "x"}], "continue_final_message": true, "add_generation_prompt": true}"#,
             status: 400, param: "continue_final_message"),
        Case(name: "a request's template, untrusted", path: "/v1/chat/completions",
             body: #"{"messages": [{"role": "user", "content": "hi"}], "chat_template": "{{ messages }}"}"#,
             status: 400, param: "chat_template", says: "--trust-request-chat-template"),
        Case(name: "tool_choice without tools", path: "/v1/chat/completions",
             body: #"{"messages": [{"role": "user", "content": "hi"}], "tool_choice": {"type": "function", "function": {"name": "f"}}}"#,
             status: 400, param: "tool_choice", says: "`tools` must be set"),
        Case(name: "tokenize without prompt or messages", path: "/tokenize", body: #"{"model": null}"#, status: 400, param: "prompt"),
        Case(name: "detokenize out of the vocabulary", path: "/detokenize", body: #"{"tokens": [99999999]}"#, status: 400, param: "tokens"),
        Case(name: "tool_choice required", path: "/v1/chat/completions",
             body: #"{"messages": [{"role": "user", "content": "hi"}], "tool_choice": "required"}"#, status: 400, param: "tool_choice"),
        Case(name: "response_format json_object", path: "/v1/chat/completions",
             body: #"{"messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "json_object"}}"#,
             status: 400, param: "response_format"),
        Case(name: "response_format on completions", path: "/v1/completions",
             body: #"{"prompt": "hi", "response_format": {"type": "json_schema", "json_schema": {}}}"#, status: 400, param: "response_format"),
        Case(name: "logit_bias", path: "/v1/completions", body: #"{"prompt": "hi", "logit_bias": {"5": 100}}"#, status: 400,
             param: "logit_bias"),
        Case(name: "suffix", path: "/v1/completions", body: #"{"prompt": "hi", "suffix": "end"}"#, status: 400, param: "suffix"),
        Case(name: "best_of", path: "/v1/completions", body: #"{"prompt": "hi", "best_of": 3}"#, status: 400, param: "best_of"),
    ]

    @Test func everyBadRequestGetsAnOpenAIErrorAndTheServerGoesOn() async throws {
        let server = try ServerProcess(["--max-model-len", "64", "--max-request-body-bytes", "4096"])
        defer { server.stop() }
        for item in Self.cases {
            let (status, json) = try await server.post(item.path, item.body)
            #expect(status == item.status, "\(item.name): \(json)")
            let error = json["error"] as? [String: Any]
            #expect(error?["message"] is String && error?["type"] is String, "\(item.name): \(json)")
            #expect(error?.keys.contains("param") == true && error?.keys.contains("code") == true, "\(item.name)")
            if let param = item.param { #expect(error?["param"] as? String == param, "\(item.name): \(json)") }
            if let words = item.says { #expect((error?["message"] as? String)?.contains(words) == true, "\(item.name): \(json)") }
        }
        let tooLarge = try await server.post("/v1/completions", #"{"prompt": "\#(String(repeating: "a", count: 5000))"}"#)
        #expect(((tooLarge.json["error"] as? [String: Any])?["message"] as? String)?.contains("4096 bytes") == true,
                "413 names the limit: \(tooLarge.json)")
        let neutral = #"{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "tools": [], "tool_choice": "none", "#
            + #""response_format": {"type": "text"}, "logit_bias": {}}"#
        #expect(try await server.post("/v1/chat/completions", neutral).status == 200, "fields that ask for nothing pass")

        let malformed = try RawHTTPConnection(port: server.port)
        try malformed.send("POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n")
        let chunked = try await malformed.response()
        #expect(chunked.status == 400, "a malformed chunked body is the client's fault: \(chunked.text)")
        let healthy = try await server.post("/v1/completions", #"{"prompt": "hi", "max_tokens": 2}"#)
        #expect(healthy.status == 200)
        #expect(try await server.get("/health").status == 200)
    }

    @Test func anAPIKeyGuardsTheOpenAIRoutes() async throws {
        let server = try ServerProcess([], environment: ["FLEXPERT_API_KEY": "sesame"])
        defer { server.stop() }
        let body = #"{"prompt": "hi", "max_tokens": 2}"#
        let refused = try await server.post("/v1/completions", body)
        #expect(refused.status == 401 && (refused.json["error"] as? [String: Any])?["code"] as? String == "invalid_api_key")
        #expect(try await server.post("/v1/completions", body, headers: [("Authorization", "Bearer wrong")]).status == 401)
        #expect(try await server.get("/v1/models").status == 401)
        #expect(try await server.post("/v1/completions", body, headers: [("Authorization", "Bearer sesame")]).status == 200)
        #expect(try await server.get("/v1/models", headers: [("Authorization", "Bearer sesame")]).status == 200)
        #expect(try await server.get("/health").status == 200, "health stays open, as in vLLM")
    }

    /// A configuration no machine can hold fails at start with the sizes, not with a crash.
    @Test func anImpossibleModelFailsWithAClearError() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("flexpert-huge-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        for name in ["tokenizer.json", "tokenizer_config.json", "generation_config.json"] {
            try FileManager.default.copyItem(atPath: ServerProcess.model + "/" + name, toPath: folder.appendingPathComponent(name).path)
        }
        for vocabulary in [1_000_000_000_000, 1 << 62] {
            var configuration = try #require(
                try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: ServerProcess.model + "/config.json")))
                    as? [String: Any])
            configuration["vocab_size"] = vocabulary
            try JSONSerialization.data(withJSONObject: configuration).write(to: folder.appendingPathComponent("config.json"))
            #expect {
                _ = try ServerProcess(["--model", folder.path, "--load-format", "dummy"])
            } throws: { error in
                "\(error)".contains("out of memory") && "\(error)".contains("MiB available")
            }
        }
    }

    /// Thousands of randomly mutated bodies: every answer is a response below 500, and the server survives.
    @Test func mutatedBodiesNeverCrashTheServer() async throws {
        let server = try ServerProcess(["--max-model-len", "48", "--max-request-body-bytes", "8192"])
        defer { server.stop() }
        let seeds: [(String, String)] = [
            ("/v1/completions", #"{"model":"qwen3_moe","prompt":"The quick brown fox","max_tokens":4,"temperature":0.7,"top_p":0.9,"top_k":5,"seed":3,"n":2,"stop":["a"],"logprobs":2,"echo":true}"#),
            ("/v1/completions", #"{"prompt":[[1,2,3],[4,5,6]],"max_tokens":3,"stream":true,"stream_options":{"include_usage":true},"min_tokens":1,"stop_token_ids":[7]}"#),
            ("/v1/chat/completions", #"{"messages":[{"role":"system","content":"x"},{"role":"user","content":[{"type":"text","text":"hi"}]}],"max_tokens":3,"logprobs":true,"top_logprobs":2,"ignore_eos":true}"#),
            ("/v1/chat/completions", #"{"messages":[{"role":"user","content":"hello"}],"max_completion_tokens":4,"stream":true,"n":2,"seed":-5}"#),
        ]
        let fragments = ["", "null", "-1", "0", "1e309", "9999999999999999999999", "\"\"", "[]", "{}", "true", "\u{0}", "\"\\u0000\"",
                         "[[]]", "-0.0", "\"é\"", ",", ":", "{", "]", "1.5", "[1,-2]", "\"\\ud800\""]
        var generator = SystemRandomNumberGenerator()
        let bodies: [(String, [UInt8])] = (0..<3000).map { _ in
            let (path, seed) = seeds.randomElement(using: &generator)!
            var bytes = Array(seed.utf8)
            for _ in 0..<Int.random(in: 1...3, using: &generator) {
                let position = Int.random(in: 0...bytes.count, using: &generator)
                switch Int.random(in: 0..<4, using: &generator) {
                case 0: if position < bytes.count { bytes[position] = UInt8.random(in: 0...255, using: &generator) }
                case 1: if position < bytes.count { bytes.remove(at: position) }
                case 2: bytes.insert(contentsOf: Array(fragments.randomElement(using: &generator)!.utf8), at: position)
                default:
                    // Replace a number with another fragment, which keeps the JSON valid more often.
                    if let digit = bytes.indices.filter({ (48...57).contains(bytes[$0]) }).randomElement(using: &generator) {
                        bytes.replaceSubrange(digit...digit, with: Array(fragments.randomElement(using: &generator)!.utf8))
                    }
                }
            }
            return (path, bytes)
        }
        let statuses = try await withThrowingTaskGroup(of: [Int].self) { group in
            for worker in 0..<8 {
                group.addTask {
                    var seen: [Int] = []
                    for index in stride(from: worker, to: bodies.count, by: 8) {
                        let (path, body) = bodies[index]
                        let (status, _) = try await server.exchange.fetch(method: "POST", path: path, body: body)
                        seen.append(status)
                    }
                    return seen
                }
            }
            return try await group.reduce(into: [Int]()) { $0 += $1 }
        }
        #expect(statuses.count == 3000)
        #expect(statuses.allSatisfy { (200..<500).contains($0) }, "statuses: \(Dictionary(grouping: statuses) { $0 }.mapValues(\.count))")
        #expect(statuses.contains(200) && statuses.contains(400), "the mutations cover both outcomes")
        #expect(try await server.get("/health").status == 200)
        #expect(try await server.post("/v1/completions", #"{"prompt": "hi", "max_tokens": 2}"#).status == 200)
    }
}
