import Foundation
import OpenAIAPI
import Testing

/// `bench serve` encodes the bodies the server decodes: what one writes, the other reads back.
struct RequestCodingTests {
    @Test func anEncodedCompletionRequestDecodesStrictlyToTheSameFields() throws {
        let sent = CompletionRequest(prompt: .tokenLists([[5, 7, 11]]), logprobs: 2, fields: SamplingFields(
            model: "m", maxTokens: 16, temperature: 0.5, stop: StopInput(["\n", "END"]), stream: true,
            streamOptions: StreamOptions(includeUsage: true), ignoreEOS: true, repetitionPenalty: 1.0))
        let body = try JSONEncoder().encode(sent)
        let read = try RequestDecoding.decode(CompletionRequest.self, from: body)
        guard case .tokenLists(let lists) = read.prompt else {
            Issue.record("a prompt of token ids came back as \(read.prompt)")
            return
        }
        #expect(lists == [[5, 7, 11]])
        #expect(read.logprobs == 2 && read.echo == nil)
        #expect(read.fields.model == "m" && read.fields.maxTokens == 16 && read.fields.temperature == 0.5)
        #expect(read.fields.stop?.strings == ["\n", "END"] && read.fields.stream == true)
        #expect(read.fields.streamOptions?.includeUsage == true && read.fields.ignoreEOS == true)
        #expect(read.fields.repetitionPenalty == 1.0 && read.fields.topP == nil && read.fields.seed == nil)
        // Fields left nil are not sent at all.
        let object = try #require(try JSONSerialization.jsonObject(with: body) as? [String: Any])
        #expect(Set(object.keys) == ["prompt", "logprobs", "model", "max_tokens", "temperature", "stop", "stream",
                                     "stream_options", "ignore_eos", "repetition_penalty"])
    }

    @Test func severalPromptsTravelAsAList() throws {
        let texts = try JSONEncoder().encode(PromptInput.texts(["a", "b"]))
        #expect(String(decoding: texts, as: UTF8.self) == #"["a","b"]"#)
        let one = try JSONEncoder().encode(PromptInput.texts(["a"]))
        #expect(String(decoding: one, as: UTF8.self) == #""a""#)
    }

    @Test func aStreamedChunkSaysWhatAClientReads() throws {
        let decoder = JSONDecoder()
        let token = try decoder.decode(StreamedChunk.self, from: Data(#"{"id":"c","choices":[{"index":0,"text":"hi"}],"usage":null}"#.utf8))
        #expect(token.choiceCount == 1 && token.usage == nil && token.error == nil)
        let last = try decoder.decode(StreamedChunk.self, from: Data(#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":9,"total_tokens":12}}"#.utf8))
        #expect(last.choiceCount == 0 && last.usage?.completionTokens == 9)
        let failed = try decoder.decode(StreamedChunk.self, from: Data(#"{"error":{"message":"rank failed","type":"server_error"}}"#.utf8))
        #expect(failed.error?.message == "rank failed" && failed.choiceCount == 0)
        // A field of an unexpected shape costs only that field: the token still counts.
        let odd = try decoder.decode(StreamedChunk.self, from: Data(#"{"choices":[{"text":"x"}],"usage":{"prompt_tokens":3},"error":"boom"}"#.utf8))
        #expect(odd.choiceCount == 1 && odd.usage?.completionTokens == nil && odd.error != nil && odd.error?.message == nil)
    }
}
