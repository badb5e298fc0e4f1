import BenchServe
import Checkpoint
import Compute
import Foundation
import Testing

/// The OpenAI endpoints of a real `flexpert serve` process on loopback.
struct OpenAIEndpointTests {
    /// Greedy tokens HF transformers produced for the fixture's prompts (`expected.safetensors`).
    static func reference() throws -> (prompts: [[Int]], tokens: [[Int]]) {
        struct Prompt: Decodable { let ids: [Int] }
        let folder = ServerProcess.model
        let prompts = try JSONDecoder().decode([Prompt].self, from: Data(contentsOf: URL(fileURLWithPath: folder + "/prompts.json")))
        let expected = try SafetensorsFile(path: folder + "/expected.safetensors")
        let tokens = try prompts.indices.map { index in
            try #require(expected.tensor(named: "tokens_\(index)")).bytes.bindMemory(to: Int32.self).map(Int.init)
        }
        return (prompts.map(\.ids), tokens)
    }

    private static func ids(_ logprobs: Any?) -> [Int] {
        ((logprobs as? [String: Any])?["tokens"] as? [String] ?? []).compactMap { Int($0.dropFirst("token_id:".count)) }
    }

    @Test func completionsMatchTransformersAndStreamTheSameText() async throws {
        let server = try ServerProcess()
        defer { server.stop() }
        let (prompts, expected) = try Self.reference()
        for (prompt, tokens) in zip(prompts, expected) {
            let body = #"{"prompt":\#(prompt),"max_tokens":\#(tokens.count),"temperature":0,"logprobs":1,"return_tokens_as_token_ids":true}"#
            let (status, json) = try await server.post("/v1/completions", body)
            #expect(status == 200, "\(json)")
            let choice = try #require((json["choices"] as? [[String: Any]])?.first)
            #expect(Self.ids(choice["logprobs"]) == tokens, "greedy tokens equal HF transformers'")
            #expect(choice["finish_reason"] as? String == "length")
            let usage = try #require(json["usage"] as? [String: Int])
            #expect(usage["prompt_tokens"] == prompt.count && usage["completion_tokens"] == tokens.count)
            #expect(usage["total_tokens"] == prompt.count + tokens.count)
            #expect(json["object"] as? String == "text_completion" && (json["id"] as? String)?.hasPrefix("cmpl-") == true)

            let events = try await server.stream("/v1/completions",
                #"{"prompt":\#(prompt),"max_tokens":\#(tokens.count),"temperature":0,"stream":true,"stream_options":{"include_usage":true}}"#)
            #expect(events.last == "[DONE]")
            let chunks = events.dropLast().map(jsonObject)
            let streamed = chunks.compactMap { ($0["choices"] as? [[String: Any]])?.first?["text"] as? String }.joined()
            #expect(streamed == choice["text"] as? String)
            #expect(chunks.dropLast().allSatisfy { $0.keys.contains("usage") && $0["usage"] is NSNull })
            #expect((chunks.last?["usage"] as? [String: Int])?["completion_tokens"] == tokens.count)
            #expect((chunks.last?["choices"] as? [Any])?.isEmpty == true)
            let reasons = chunks.compactMap { ($0["choices"] as? [[String: Any]])?.first?["finish_reason"] as? String }
            #expect(reasons == ["length"], "only the last token chunk carries the reason")
        }
    }

    @Test func chatStreamsRoleContentAndFinishAsOpenAIDoes() async throws {
        let server = try ServerProcess()
        defer { server.stop() }
        let messages = #"[{"role":"system","content":"Be brief."},{"role":"user","content":[{"type":"text","text":"Hello"}]}]"#
        let (status, json) = try await server.post("/v1/chat/completions",
                                                   #"{"messages":\#(messages),"max_tokens":6,"temperature":0}"#)
        #expect(status == 200, "\(json)")
        let choice = try #require((json["choices"] as? [[String: Any]])?.first)
        let message = try #require(choice["message"] as? [String: Any])
        #expect(message["role"] as? String == "assistant")
        #expect(json["object"] as? String == "chat.completion")
        #expect((json["usage"] as? [String: Int])?["completion_tokens"] == 6)

        let events = try await server.stream("/v1/chat/completions",
            #"{"messages":\#(messages),"max_tokens":6,"temperature":0,"stream":true,"stream_options":{"include_usage":true}}"#)
        #expect(events.last == "[DONE]")
        let chunks = events.dropLast().map(jsonObject)
        #expect(chunks.allSatisfy { $0["object"] as? String == "chat.completion.chunk" })
        let deltas = chunks.compactMap { ($0["choices"] as? [[String: Any]])?.first?["delta"] as? [String: Any] }
        #expect(deltas.first?["role"] as? String == "assistant")
        #expect(deltas.compactMap { $0["content"] as? String }.joined() == message["content"] as? String)
        let finish = chunks.compactMap { ($0["choices"] as? [[String: Any]])?.first }.last
        #expect(finish?["finish_reason"] as? String == "length" && (finish?["delta"] as? [String: Any])?.isEmpty == true)
        #expect((chunks.last?["usage"] as? [String: Int])?["total_tokens"] == (json["usage"] as? [String: Int])?["total_tokens"])
    }

    @Test func samplingFieldsBehave() async throws {
        let server = try ServerProcess()
        defer { server.stop() }
        // n choices with a seed: repeatable, indexed, and not all alike.
        let seeded = #"{"prompt":"The quick brown fox","max_tokens":12,"temperature":1.0,"n":3,"seed":7}"#
        let first = try await server.post("/v1/completions", seeded), second = try await server.post("/v1/completions", seeded)
        let texts = (first.json["choices"] as? [[String: Any]] ?? []).map { $0["text"] as? String ?? "" }
        #expect(texts.count == 3 && texts == (second.json["choices"] as? [[String: Any]] ?? []).map { $0["text"] as? String ?? "" })
        #expect(Set(texts).count > 1)
        #expect((first.json["choices"] as? [[String: Any]] ?? []).map { $0["index"] as? Int } == [0, 1, 2])

        // A stop string cuts the text where it starts.
        let greedy = try await server.post("/v1/completions", #"{"prompt":"The quick brown fox","max_tokens":16,"temperature":0}"#)
        let full = try #require((greedy.json["choices"] as? [[String: Any]])?.first?["text"] as? String)
        let scalars = Array(full.unicodeScalars)
        let stop = String(String.UnicodeScalarView(scalars[4..<6]))
        let cut = try #require(full.range(of: stop)).lowerBound
        let stopped = try await server.post("/v1/completions",
            #"{"prompt":"The quick brown fox","max_tokens":16,"temperature":0,"stop":[\#(JSONValueText.string(stop))]}"#)
        let stoppedChoice = try #require((stopped.json["choices"] as? [[String: Any]])?.first)
        #expect(stoppedChoice["text"] as? String == String(full[..<cut]))
        #expect(stoppedChoice["finish_reason"] as? String == "stop")

        // Echo with logprobs: the prompt comes back first, its first token without a log-probability.
        let echoed = try await server.post("/v1/completions", #"{"prompt":[5,6,7,8],"max_tokens":3,"temperature":0,"echo":true,"logprobs":2}"#)
        let echoChoice = try #require((echoed.json["choices"] as? [[String: Any]])?.first)
        let logprobs = try #require(echoChoice["logprobs"] as? [String: Any])
        #expect((logprobs["tokens"] as? [String])?.count == 7)
        let values = try #require(logprobs["token_logprobs"] as? [Any])
        #expect(values.first is NSNull && values.dropFirst().allSatisfy { ($0 as? Double).map { $0 <= 0 } == true })
        #expect((logprobs["top_logprobs"] as? [Any])?.dropFirst().allSatisfy { ($0 as? [String: Double])?.count ?? 0 >= 1 } == true)

        // ignore_eos with min_tokens: the length is exactly max_tokens.
        let long = try await server.post("/v1/completions", #"{"prompt":"a","max_tokens":20,"min_tokens":20,"ignore_eos":true}"#)
        #expect((long.json["usage"] as? [String: Int])?["completion_tokens"] == 20)

        // Token-id prompts, in a list: one choice per prompt.
        let listed = try await server.post("/v1/completions", #"{"prompt":[[1,2,3],[4,5]],"max_tokens":2}"#)
        #expect((listed.json["choices"] as? [Any])?.count == 2 && (listed.json["usage"] as? [String: Int])?["prompt_tokens"] == 5)
    }

    /// 48 concurrent greedy requests through the server give each request's tokens alone.
    @Test func concurrentRequestsMatchRunningAlone() async throws {
        let server = try ServerProcess(["--max-num-batched-tokens", "64", "--max-num-seqs", "16"])
        defer { server.stop() }
        let bodies = (0..<48).map { index in
            let prompt = (0..<(3 + index % 29)).map { ($0 * 37 + index * 101) % 1900 }
            return #"{"prompt":\#(prompt),"max_tokens":\#(4 + index % 9),"temperature":0,"logprobs":0,"return_tokens_as_token_ids":true}"#
        }
        let together = try await withThrowingTaskGroup(of: (Int, [Int]).self) { group in
            for (index, body) in bodies.enumerated() {
                group.addTask {
                    let (_, json) = try await server.post("/v1/completions", body)
                    return (index, Self.ids((json["choices"] as? [[String: Any]])?.first?["logprobs"]))
                }
            }
            return try await group.reduce(into: [Int: [Int]]()) { $0[$1.0] = $1.1 }
        }
        for (index, body) in bodies.enumerated() {
            let (_, json) = try await server.post("/v1/completions", body)
            let alone = Self.ids((json["choices"] as? [[String: Any]])?.first?["logprobs"])
            #expect(alone.count == 4 + index % 9)
            #expect(together[index] == alone, "request \(index)")
        }
    }

    @Test func modelsHealthVersionAndMetrics() async throws {
        let server = try ServerProcess(["--served-model-name", "tiny", "tiny-alias", "--max-model-len", "128"])
        defer { server.stop() }
        let models = jsonObject(try await server.get("/v1/models").body)
        let data = try #require(models["data"] as? [[String: Any]])
        #expect(data.map { $0["id"] as? String } == ["tiny", "tiny-alias"])
        #expect(data.first?["max_model_len"] as? Int == 128)
        #expect(try await server.get("/health").status == 200)
        #expect(jsonObject(try await server.get("/version").body)["version"] is String)
        let byAlias = try await server.post("/v1/completions", #"{"model":"tiny-alias","prompt":"hi","max_tokens":3}"#)
        #expect(byAlias.status == 200 && byAlias.json["model"] as? String == "tiny-alias")

        let metrics = try await server.get("/metrics").body
        for name in ["flexpert:num_requests_running", "flexpert:num_requests_waiting", "flexpert:kv_cache_usage_perc",
                     "flexpert:prompt_tokens_total", "flexpert:generation_tokens_total", "flexpert:request_success_total",
                     "flexpert:time_to_first_token_seconds_bucket", "flexpert:time_per_output_token_seconds_count",
                     "flexpert:inter_token_latency_seconds_sum", "flexpert:e2e_request_latency_seconds_count"] {
            #expect(metrics.contains(name), "\(name) missing")
        }
        #expect(try await server.metric("flexpert:generation_tokens_total") == 3)
        #expect(try await server.metric("flexpert:request_success_total{model_name=\"tiny\",finished_reason=\"length\"}") == 1)
        #expect(try await server.metric("flexpert:inter_token_latency_seconds_count") == 2)

        // Prefix caching is on by default: the same 40-token prompt again starts after its two
        // full blocks of 16 (its last token is always computed, to sample from).
        let hitsBefore = try await server.metric("flexpert:prefix_cache_hits_total") ?? -1
        let ids = (0..<40).map { String(100 + $0) }.joined(separator: ",")
        for _ in 0..<2 {
            #expect(try await server.post("/v1/completions", #"{"prompt":[\#(ids)],"max_tokens":2}"#).status == 200)
        }
        #expect(try await server.metric("flexpert:prefix_cache_hits_total") == hitsBefore + 32)
        #expect(try await server.metric("flexpert:prefix_cache_queries_total") ?? 0 >= 80)
        #expect(try await server.metric("flexpert:prefix_cache_hit_rate") ?? 0 > 0)
    }

    /// A client that goes away mid-stream aborts its request: the engine frees its blocks. Thirty-two
    /// choices of 500 tokens take seconds, so the abort cannot lose a race with the natural end even
    /// on a loaded machine.
    @Test func disconnectingClientsAbortTheirRequests() async throws {
        let server = try ServerProcess(["--max-model-len", "512"])
        defer { server.stop() }
        struct Enough: Error {}
        func finished(_ reason: String) async throws -> Double {
            try await server.metric("flexpert:request_success_total{model_name=\"qwen3_moe\",finished_reason=\"\(reason)\"}") ?? 0
        }
        // The premise: the 32 choices are still generating when the client goes. A starved machine
        // can let them finish first (then they end by length, and nothing is left to abort): try again.
        var outcomes: [(aborted: Double, lengths: Double)] = []
        for _ in 0..<3 {
            let (abortedBefore, lengthsBefore) = (try await finished("abort"), try await finished("length"))
            var received = 0
            do {
                try await server.exchange.send(method: "POST", path: "/v1/completions",
                                               body: Array(#"{"prompt":"x","max_tokens":500,"n":32,"ignore_eos":true,"stream":true}"#.utf8)) { _ in
                    received += 1
                    if received == 3 { throw Enough() }
                }
            } catch is Enough {}
            let deadline = Date().addingTimeInterval(60)
            var outcome = (aborted: 0.0, lengths: 0.0)
            while Date() < deadline {
                outcome = (try await finished("abort") - abortedBefore, try await finished("length") - lengthsBefore)
                if outcome.aborted + outcome.lengths >= 32 { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            outcomes.append(outcome)
            if outcome.lengths == 0 { break }
        }
        #expect(outcomes.last?.aborted == 32, "aborted and finished by length, per attempt: \(outcomes)")
        #expect(try await server.metric("flexpert:num_requests_running") == 0)
        #expect(try await server.metric("flexpert:kv_cache_usage_perc") == 0)
    }
}

/// JSON string literal text for building bodies in tests.
enum JSONValueText {
    static func string(_ value: String) -> String {
        String(decoding: try! JSONSerialization.data(withJSONObject: [value]), as: UTF8.self).dropFirst().dropLast().description
    }
}
