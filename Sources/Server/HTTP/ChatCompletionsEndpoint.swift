import Foundation
import FrontEnd
import Messages
import OpenAIAPI
import Tokenization

/// `POST /v1/chat/completions`.
struct ChatCompletionsEndpoint: GenerationEndpoint {
    let frontEnd: FrontEnd

    static let roles: Set<String> = ["system", "developer", "user", "assistant", "tool"]

    struct Prepared: Sendable {
        let prompt: [Int]
        let tokenLimit: Int
        let settings: GenerationSettings
        let returnsTokenIDs: Bool
        let model: String
    }

    func streams(_ prepared: Prepared) -> Bool { prepared.settings.streams }

    func prepare(_ body: Data) throws -> Prepared {
        let request = try RequestDecoding.decode(ChatCompletionRequest.self, from: body, unsupported: ChatCompletionRequest.unsupportedFields)
        try frontEnd.checkModel(request.fields.model)
        guard !request.messages.isEmpty else { throw APIError.invalid("'messages' must not be empty.", param: "messages") }
        for (index, message) in request.messages.enumerated() where !Self.roles.contains(message.role) {
            throw APIError.invalid("Unknown role '\(message.role)'; expected one of \(Self.roles.sorted()).",
                                   param: "messages[\(index)].role")
        }
        guard let template = frontEnd.chatTemplate else {
            throw APIError.invalid("This model has no chat template; use /v1/completions.", param: "messages")
        }
        var logprobCount: Int?
        if request.logprobs == true {
            logprobCount = request.topLogprobs ?? 0
        } else if request.topLogprobs != nil {
            throw APIError.invalid("top_logprobs needs logprobs to be true.", param: "top_logprobs")
        }
        let settings = try GenerationSettings(request.fields, logprobCount: logprobCount, defaultMaxTokens: nil,
                                              limits: frontEnd.limits)
        try frontEnd.checkChoiceCount(prompts: 1, n: settings.choiceCount)
        let text = template.render(request.messages.map { ChatMessage(role: $0.role, content: $0.content) },
                                   addsGenerationPrompt: true)
        let prompt = frontEnd.tokenizer.encode(text, addsSpecialTokens: false)
        let tokenLimit = try settings.tokenLimit(promptCount: prompt.count, limits: frontEnd.limits)
        return Prepared(prompt: prompt, tokenLimit: tokenLimit, settings: settings,
                        returnsTokenIDs: request.fields.returnsTokenIDs ?? false, model: request.fields.model ?? frontEnd.modelNames[0])
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
            return ChoiceRunner(frontEnd: frontEnd, submission: submission, stopStrings: settings.stopStrings)
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
            try await runner.run { delta, choices in
                let state = choices[delta.choice]
                // An engine failure mid-stream becomes an error event, as vLLM sends it.
                if case .error(let message) = delta.finishReason { throw APIError.server(message) }
                if !delta.text.isEmpty || !delta.tokens.isEmpty {
                    try await send(envelope("chat.completion.chunk", [.object([
                        ("index", .int(delta.choice)), ("delta", .object([("content", .string(delta.text))])),
                        ("logprobs", logprobs(state, delta.tokens)), ("finish_reason", .null),
                    ])], usage: usage))
                }
                if let reason = delta.finishReason {
                    try await send(envelope("chat.completion.chunk", [.object([
                        ("index", .int(delta.choice)), ("delta", .object([])), ("logprobs", .null),
                        ("finish_reason", .string(reason.name)),
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
            .object([
                ("index", .int(index)),
                ("message", .object([("role", "assistant"), ("content", .string(state.text.text))])),
                ("logprobs", logprobs(state, 0..<state.logprobs.count)),
                ("finish_reason", .string(state.finishReason?.name ?? "abort")),
            ])
        }
        let completion = runner.choices.reduce(0) { $0 + $1.tokenIDs.count }
        try await send(envelope("chat.completion", choices,
                                usage: ResponseFormatting.usage(prompt: prepared.prompt.count, completion: completion)))
    }
}
