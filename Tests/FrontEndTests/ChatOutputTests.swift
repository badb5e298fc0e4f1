import Testing
@testable import FrontEnd

/// The tool-call and reasoning parsers on fixed model outputs in each model's own format, whole
/// and streamed in pieces of every size.
@Suite struct ChatOutputTests {
    struct Expected {
        let content: String?
        let calls: [(String, String)]
    }

    static let toolOutputs: [(ToolCallParser, String, Expected)] = [
        (.hermes, "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": 3, \"scale\": 1.5}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>",
         Expected(content: "Let me check.\n", calls: [("get_weather", #"{"city": "Paris", "days": 3, "scale": 1.5}"#), ("get_time", "{}")])),
        (.hermes, "<tool_call>\n{\"name\": \"search\", \"arguments\": {\"q\": \"東京 😀 \\\"x\\\"\"}}\n</tool_call>",
         Expected(content: nil, calls: [("search", #"{"q": "東京 😀 \"x\""}"#)])),
        (.hermes, "<tool_call>\n{\"name\": \"unterminated\", \"arguments\": {\"a\": [1, 2]}}",
         Expected(content: nil, calls: [("unterminated", #"{"a": [1, 2]}"#)])),
        (.hermes, "<tool_call>\n{\"name\": broken json}\n</tool_call>",
         Expected(content: "<tool_call>\n{\"name\": broken json}\n</tool_call>", calls: [])),
        (.hermes, "No tools needed: the answer is 4.", Expected(content: "No tools needed: the answer is 4.", calls: [])),
        // A stream cannot take back a call it sent: a bad block after a good one is answer text from there on.
        (.hermes, "<tool_call>{\"name\": \"a\", \"arguments\": {}}</tool_call>\n<tool_call>{oops}</tool_call> tail",
         Expected(content: "<tool_call>{oops}</tool_call> tail", calls: [("a", "{}")])),
        (.deepseekV3, "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n```json\n{not json}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
         Expected(content: "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n```json\n{not json}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>", calls: [])),
        (.mistral, "[TOOL_CALLS][{\"name\": \"f\", \"arguments\": ", Expected(content: "[TOOL_CALLS][{\"name\": \"f\", \"arguments\": ", calls: [])),
        (.deepseekV3, "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n```json\n{}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜> after",
         Expected(content: " after", calls: [("f", "{}")])),
        (.hermes, "  \n<tool_call>{\"name\": \"f\", \"arguments\": {}}</tool_call>", Expected(content: nil, calls: [("f", "{}")])),
        (.deepseekV3, "I will look.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"city\": \"Paris\"}\n```<｜tool▁call▁end｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_time\n```json\n{}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
         Expected(content: "I will look.", calls: [("get_weather", #"{"city": "Paris"}"#), ("get_time", "{}")])),
        (.mistral, "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": null}}, {\"name\": \"get_time\", \"arguments\": {\"tz\": \"UTC\"}}]",
         Expected(content: nil, calls: [("get_weather", #"{"city": "Paris", "unit": null}"#), ("get_time", #"{"tz": "UTC"}"#)])),
        (.mistral, "Checking[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Paris\"}",
         Expected(content: "Checking", calls: [("get_weather", #"{"city": "Paris"}"#)])),
        (.llama3JSON, "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}; {\"name\": \"get_time\", \"parameters\": {\"tz\": \"a;b\"}}",
         Expected(content: nil, calls: [("get_weather", #"{"city": "Paris"}"#), ("get_time", #"{"tz": "a;b"}"#)])),
        (.llama3JSON, "<|python_tag|>{\"name\": \"f\", \"arguments\": {\"x\": true}}",
         Expected(content: nil, calls: [("f", #"{"x": true}"#)])),
        (.llama3JSON, "  Paris is sunny {today}.", Expected(content: "  Paris is sunny {today}.", calls: [])),
    ]

    @Test func wholeOutputsGiveTheirContentAndCalls() {
        for (parser, output, expected) in Self.toolOutputs {
            let (content, calls) = parser.parse(output)
            #expect(content == expected.content, "\(parser) \(output.debugDescription)")
            #expect(calls.map(\.name) == expected.calls.map(\.0), "\(parser) \(output.debugDescription)")
            #expect(calls.map(\.arguments) == expected.calls.map(\.1), "\(parser) \(output.debugDescription)")
            let prefix = parser == .mistral ? "" : "chatcmpl-tool-"
            #expect(calls.allSatisfy { $0.id.hasPrefix(prefix) && $0.id.count == (parser == .mistral ? 9 : 30) })
            #expect(Set(calls.map(\.id)).count == calls.count)
        }
    }

    @Test func streamedOutputsGiveTheSameContentAndCallsInPiecesOfAnySize() {
        for (parser, output, expected) in Self.toolOutputs {
            for size in [1, 2, 3, 7, 1000] {
                var stream = ToolCallParser.Stream(parser)
                var content = ""
                var calls: [ToolCall] = []
                for piece in Self.pieces(output, size: size) {
                    let part = stream.feed(piece)
                    content += part.content
                    calls += part.calls
                }
                let rest = stream.finish()
                content += rest.content
                calls += rest.calls
                // A stream cannot take back the blank text it sent before the calls began.
                let blankBeforeCalls = expected.content == nil && content.allSatisfy(\.isWhitespace)
                #expect(blankBeforeCalls || content == (expected.content ?? ""), "\(parser) size \(size) \(output.debugDescription) gave \(content.debugDescription)")
                #expect(calls.map(\.name) == expected.calls.map(\.0), "\(parser) size \(size)")
                #expect(calls.map(\.arguments) == expected.calls.map(\.1), "\(parser) size \(size)")
            }
        }
    }

    @Test func aHermesCallIsSentAsSoonAsItCloses() {
        var stream = ToolCallParser.Stream(.hermes)
        #expect(stream.feed("Hi <tool_").content == "Hi ")
        #expect(stream.feed("call>{\"name\": \"a\", \"arguments\": {}}</tool_call>").calls.map(\.name) == ["a"])
        #expect(stream.feed("<tool_call>{\"name\": \"b\", \"arguments\": {}}").calls.isEmpty)
        #expect(stream.finish().calls.map(\.name) == ["b"])
    }

    static let reasoningOutputs: [(ReasoningParser, String, String?, String?)] = [
        (.qwen3, "<think>\nFirst, 2 + 2.\n</think>\n\nIt is 4.", "\nFirst, 2 + 2.\n", "\n\nIt is 4."),
        (.qwen3, "no tags: all reasoning", "no tags: all reasoning", nil),
        (.qwen3, "<think>plan<tool_call>{\"name\": \"f\"}</tool_call>", "plan", "<tool_call>{\"name\": \"f\"}</tool_call>"),
        (.qwen3, "<think>only thinking</think>", "only thinking", nil),
        (.deepseekR1, "Let me think.\n</think>\n\nIt is 4.", "Let me think.\n", "\n\nIt is 4."),
        (.deepseekR1, "<think>repeated opening</think>answer", "repeated opening", "answer"),
        (.deepseekR1, "still thinking when the tokens ran out", "still thinking when the tokens ran out", nil),
        (.deepseekR1, "a <tool_call> is reasoning here</think>done", "a <tool_call> is reasoning here", "done"),
        // Markers match by code point, as in Python: a combining mark after `</think>` does not hide it.
        (.deepseekR1, "caf\u{E9}</think>\u{301}x", "caf\u{E9}", "\u{301}x"),
    ]

    @Test func reasoningIsSplitFromTheAnswerWholeAndStreamed() {
        for (parser, output, reasoning, content) in Self.reasoningOutputs {
            let split = parser.split(output, startsInReasoning: true)
            #expect(split.reasoning.map { Array($0.unicodeScalars) } == reasoning.map { Array($0.unicodeScalars) }, "\(parser) \(output.debugDescription)")
            #expect(split.content.map { Array($0.unicodeScalars) } == content.map { Array($0.unicodeScalars) }, "\(parser) \(output.debugDescription)")
            for size in [1, 2, 5, 1000] {
                var stream = ReasoningParser.Stream(parser, startsInReasoning: true)
                var thought = "", answer = ""
                for piece in Self.pieces(output, size: size) {
                    let part = stream.feed(piece)
                    thought += part.reasoning
                    answer += part.content
                }
                let rest = stream.finish()
                #expect(Array((thought + rest.reasoning).unicodeScalars) == Array((reasoning ?? "").unicodeScalars), "\(parser) size \(size) \(output.debugDescription)")
                #expect(Array((answer + rest.content).unicodeScalars) == Array((content ?? "").unicodeScalars), "\(parser) size \(size) \(output.debugDescription)")
            }
        }
        #expect(ReasoningParser.qwen3.split("It is 4.", startsInReasoning: false) == (nil, "It is 4."))
    }

    @Test func thePromptSaysWhetherTheOutputStartsInTheReasoning() {
        let qwen = ReasoningParser.qwen3
        #expect(qwen.startsInReasoning(prompt: "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n", thinking: nil))
        #expect(!qwen.startsInReasoning(prompt: "<|im_start|>assistant\n<think>\n\n</think>\n\n", thinking: nil))
        #expect(!qwen.startsInReasoning(prompt: "<|im_start|>assistant\n", thinking: false))
        let history = "<|im_start|>assistant\n<think>x</think>y<|im_end|>\n<|im_start|>user\nmore<|im_end|>\n<|im_start|>assistant\n"
        #expect(qwen.startsInReasoning(prompt: history, thinking: true))
        #expect(ReasoningParser.deepseekR1.startsInReasoning(prompt: "<｜User｜>hi<｜Assistant｜><think>\n", thinking: nil))
        #expect(!ReasoningParser.deepseekR1.startsInReasoning(prompt: "<｜Assistant｜><think>x</think>", thinking: nil))
    }

    @Test func toolCallsAreReadFromTheAnswerAfterTheReasoning() {
        let output = ChatOutput(reasoning: .deepseekR1, calls: .parsed(.deepseekV3))
        let text = "The user wants weather.</think>Looking.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"city\": \"Oslo\"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>"
        let message = output.message(text)
        #expect(message.reasoning == "The user wants weather.")
        #expect(message.content == "Looking.")
        #expect(message.calls.map(\.arguments) == [#"{"city": "Oslo"}"#])
        var stream = ChatOutput.Stream(output)
        var reasoning = "", content = "", calls: [ToolCall] = []
        for piece in Self.pieces(text, size: 3) {
            let part = stream.feed(piece)
            reasoning += part.reasoning
            content += part.content
            calls += part.calls
        }
        let rest = stream.finish()
        #expect(reasoning + rest.reasoning == "The user wants weather.")
        #expect(content + rest.content == "Looking.")
        #expect((calls + rest.calls).map(\.name) == ["get_weather"])
        #expect(stream.madeCalls)
    }

    @Test func aNamedFunctionTakesTheWholeAnswerAsItsArguments() {
        let message = ChatOutput(reasoning: nil, calls: .named("lookup")).message(#"{"q": 1}"#)
        #expect(message.calls.map(\.name) == ["lookup"] && message.calls[0].arguments == #"{"q": 1}"#)
        #expect(ChatOutput(reasoning: nil, calls: .named("lookup")).message("  ").calls.isEmpty)
        let required = ChatOutput(reasoning: nil, calls: .required).message(#"[{"name": "a", "parameters": {"x": 2}}, {"name": "b", "parameters": {}}]"#)
        #expect(required.calls.map(\.arguments) == [#"{"x": 2}"#, "{}"] && required.content == "")
        let one = ChatOutput(reasoning: nil, calls: .required, keepsOneCall: true).message(#"[{"name": "a", "parameters": {}}, {"name": "b", "parameters": {}}]"#)
        #expect(one.calls.map(\.name) == ["a"])
        let notJSON = ChatOutput(reasoning: nil, calls: .required).message("plain words")
        #expect(notJSON.calls.isEmpty && notJSON.content == "plain words")
    }

    /// `text` in pieces of `size` code points, as a detokenizer may split it (between a letter and its combining mark too).
    static func pieces(_ text: String, size: Int) -> [String] {
        let scalars = Array(text.unicodeScalars)
        return stride(from: 0, to: scalars.count, by: size).map { start in
            String(String.UnicodeScalarView(scalars[start..<min(start + size, scalars.count)]))
        }
    }
}
