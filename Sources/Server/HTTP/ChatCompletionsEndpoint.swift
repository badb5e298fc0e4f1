import Foundation
import FrontEnd
import Messages
import OpenAIAPI
import Tokenization

/// `POST /v1/chat/completions`.
struct ChatCompletionsEndpoint: GenerationEndpoint {
    let frontEnd: FrontEnd

    struct Prepared: Sendable {
        let prompt: [Int]
        let tokenLimit: Int
        let settings: GenerationSettings
        let returnsTokenIDs: Bool
        let model: String
        let output: ChatOutput
    }

    func streams(_ prepared: Prepared) -> Bool { prepared.settings.streams }

    func prepare(_ body: Data) throws -> Prepared {
        let (request, json) = try RequestDecoding.decodeKeepingJSON(ChatCompletionRequest.self, from: body,
                                                                   unsupported: ChatCompletionRequest.unsupportedFields)
        try frontEnd.checkModel(request.fields.model)
        let fields = try ChatTemplateFields(json, addsGenerationPromptByDefault: true)
        try frontEnd.chatTemplating.checkRequestTemplate(fields, trusted: frontEnd.chatOptions.trustsRequestChatTemplate)
        let calls = try calls(for: fields)
        var logprobCount: Int?
        if request.logprobs == true {
            logprobCount = request.topLogprobs ?? 0
        } else if request.topLogprobs != nil {
            throw APIError.invalid("top_logprobs needs logprobs to be true.", param: "top_logprobs")
        }
        let settings = try GenerationSettings(request.fields, logprobCount: logprobCount, defaultMaxTokens: nil,
                                              limits: frontEnd.limits)
        try frontEnd.checkChoiceCount(prompts: 1, n: settings.choiceCount)
        let text = try frontEnd.chatTemplating.prompt(fields)
        let prompt = frontEnd.tokenizer.encode(text, addsSpecialTokens: false)
        let reasoning = frontEnd.chatOptions.reasoningParser
        let thinking = fields.chatTemplateKwargs.first { $0.0 == "enable_thinking" }.flatMap { if case .bool(let flag) = $0.1 { flag } else { nil } }
        let output = ChatOutput(reasoning: reasoning, startsInReasoning: reasoning?.startsInReasoning(prompt: text, thinking: thinking) ?? false,
                                calls: calls, keepsOneCall: !fields.parallelToolCalls)
        let tokenLimit = try settings.tokenLimit(promptCount: prompt.count, limits: frontEnd.limits)
        return Prepared(prompt: prompt, tokenLimit: tokenLimit, settings: settings,
                        returnsTokenIDs: request.fields.returnsTokenIDs ?? false, model: request.fields.model ?? frontEnd.modelNames[0],
                        output: output)
    }

    /// How the request's tool choice reads the output, as vLLM allows it.
    private func calls(for fields: ChatTemplateFields) throws -> ChatOutput.Calls {
        switch fields.toolChoice {
        case .none: return .none
        case .required: return .required
        case .function(let name): return .named(name)
        case .auto:
            guard fields.tools?.isEmpty == false else { return .none }
            guard frontEnd.chatOptions.enablesAutoToolChoice, let parser = frontEnd.chatOptions.toolCallParser else {
                throw APIError.invalid("\"auto\" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set",
                                       param: "tool_choice")
            }
            return .parsed(parser)
        }
    }

    private static func toolCalls(_ calls: [ToolCall], firstIndex: Int) -> JSONValue {
        .array(calls.enumerated().map { offset, call in
            .object([
                ("index", .int(firstIndex + offset)), ("id", .string(call.id)), ("type", "function"),
                ("function", .object([("name", .string(call.name)), ("arguments", .string(call.arguments))])),
            ])
        })
    }

    func run(_ prepared: Prepared, send: (JSONValue) async throws -> Void) async throws {
        let settings = prepared.settings
        let id = ResponseFormatting.identifier("chatcmpl-"), created = ResponseFormatting.now
        let label = ResponseFormatting.tokenLabel(frontEnd.tokenizer, asIDs: prepared.returnsTokenIDs)
        func envelope(_ object: String, _ choices: [JSONValue], usage: JSONValue?) -> JSONValue {
            var members: [(String, JSONValue)] = [("id", .string(id)), ("object", .string(object)), ("created", .int(created)),
                                                  ("model", .string(prepared.model)), ("choices", .array(choices))]
            if let usage { members.append(("usage", usage)) }
            return .object(members)
        }
        // Submitted only once the role chunks are out: a client gone before then leaves nothing running.
        func submit() throws -> ChoiceRunner {
            let submission = try frontEnd.submit(prompts: [prepared.prompt], tokenLimits: [prepared.tokenLimit], settings: settings,
                                                 promptLogprobs: nil)
            return ChoiceRunner(frontEnd: frontEnd, submission: submission, stopStrings: settings.stopStrings,
                                keepsSpecialTokens: prepared.output.keepsSpecialTokens)
        }
        func logprobs(_ state: ChoiceState, _ range: Range<Int>) -> JSONValue {
            settings.logprobCount == nil ? .null : ResponseFormatting.chatLogprobs(state.logprobs[range], label: label)
        }

        if settings.streams {
            let usage: JSONValue? = settings.includesUsage ? .null : nil
            // OpenAI opens every choice with the role, then sends content deltas, then an empty delta with the reason.
            for choice in 0..<settings.choiceCount {
                try await send(envelope("chat.completion.chunk", [.object([
                    ("index", .int(choice)), ("delta", .object([("role", "assistant"), ("content", "")])),
                    ("logprobs", .null), ("finish_reason", .null),
                ])], usage: usage))
            }
            var runner = try submit()
            var outputs = (0..<settings.choiceCount).map { _ in ChatOutput.Stream(prepared.output) }
            var sentCalls = [Int](repeating: 0, count: settings.choiceCount)
            try await runner.run { delta, choices in
                let state = choices[delta.choice]
                // An engine failure mid-stream becomes an error event, as vLLM sends it.
                if case .error(let message) = delta.finishReason { throw APIError.server(message) }
                var piece = outputs[delta.choice].feed(delta.text)
                if delta.finishReason != nil {
                    let rest = outputs[delta.choice].finish()
                    piece.reasoning += rest.reasoning
                    piece.content += rest.content
                    piece.calls += rest.calls
                }
                var members: [(String, JSONValue)] = []
                // vLLM 0.34 names the field `reasoning`; earlier releases and most clients read `reasoning_content`.
                if !piece.reasoning.isEmpty { members += [("reasoning", .string(piece.reasoning)), ("reasoning_content", .string(piece.reasoning))] }
                if !piece.content.isEmpty { members.append(("content", .string(piece.content))) }
                if !piece.calls.isEmpty {
                    members.append(("tool_calls", Self.toolCalls(piece.calls, firstIndex: sentCalls[delta.choice])))
                    sentCalls[delta.choice] += piece.calls.count
                }
                if !members.isEmpty || !delta.tokens.isEmpty {
                    try await send(envelope("chat.completion.chunk", [.object([
                        ("index", .int(delta.choice)), ("delta", .object(members)),
                        ("logprobs", logprobs(state, delta.tokens)), ("finish_reason", .null),
                    ])], usage: usage))
                }
                if let reason = delta.finishReason {
                    try await send(envelope("chat.completion.chunk", [.object([
                        ("index", .int(delta.choice)), ("delta", .object([])), ("logprobs", .null),
                        ("finish_reason", .string(Self.finishReason(reason.name, prepared.output, madeCalls: sentCalls[delta.choice] > 0))),
                    ])], usage: usage))
                }
            }
            if settings.includesUsage {
                let completion = runner.choices.reduce(0) { $0 + $1.tokenIDs.count }
                try await send(envelope("chat.completion.chunk", [],
                                        usage: ResponseFormatting.usage(prompt: prepared.prompt.count, completion: completion)))
            }
            return
        }

        var runner = try submit()
        try await runner.run { _, _ in }
        if let error = ResponseFormatting.engineError(runner.choices) { throw error }
        let choices: [JSONValue] = runner.choices.enumerated().map { index, state in
            let message = prepared.output.message(state.text.text)
            var members: [(String, JSONValue)] = [("role", "assistant"), ("content", message.content.map { .string($0) } ?? .null)]
            if !message.calls.isEmpty { members.append(("tool_calls", Self.toolCalls(message.calls, firstIndex: 0).droppingIndex)) }
            if prepared.output.reasoning != nil {
                let reasoning = message.reasoning.map { JSONValue.string($0) } ?? .null
                members += [("reasoning", reasoning), ("reasoning_content", reasoning)]
            }
            return .object([
                ("index", .int(index)),
                ("message", .object(members)),
                ("logprobs", logprobs(state, 0..<state.logprobs.count)),
                ("finish_reason", .string(Self.finishReason(state.finishReason?.name ?? "abort", prepared.output,
                                                            madeCalls: !message.calls.isEmpty))),
            ])
        }
        let completion = runner.choices.reduce(0) { $0 + $1.tokenIDs.count }
        try await send(envelope("chat.completion", choices,
                                usage: ResponseFormatting.usage(prompt: prepared.prompt.count, completion: completion)))
    }

    /// vLLM reports `tool_calls` when the parser (or `required`) found calls; a named function keeps the engine's reason.
    private static func finishReason(_ engine: String, _ output: ChatOutput, madeCalls: Bool) -> String {
        switch output.calls {
        case .parsed, .required: madeCalls && engine == "stop" ? "tool_calls" : engine
        case .none, .named: engine
        }
    }
}

private extension JSONValue {
    /// A non-streamed message's tool calls carry no `index`.
    var droppingIndex: JSONValue {
        guard case .array(let calls) = self else { return self }
        return .array(calls.map { call in
            guard case .object(let members) = call else { return call }
            return .object(members.filter { $0.0 != "index" })
        })
    }
}
