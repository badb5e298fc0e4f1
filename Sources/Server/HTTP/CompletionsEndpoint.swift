import Foundation
import FrontEnd
import Messages
import OpenAIAPI
import Tokenization

/// `POST /v1/completions`.
struct CompletionsEndpoint: GenerationEndpoint {
    let frontEnd: FrontEnd

    struct Prepared: Sendable {
        let prompts: [[Int]]
        let promptTexts: [String]
        let tokenLimits: [Int]
        let settings: GenerationSettings
        let echoes: Bool
        let returnsTokenIDs: Bool
        let model: String
    }

    func streams(_ prepared: Prepared) -> Bool { prepared.settings.streams }

    func prepare(_ body: Data) throws -> Prepared {
        let request = try RequestDecoding.decode(CompletionRequest.self, from: body, unsupported: CompletionRequest.unsupportedFields)
        try frontEnd.checkModel(request.fields.model)
        let settings = try GenerationSettings(request.fields, logprobCount: request.logprobs, defaultMaxTokens: 16,
                                              limits: frontEnd.limits)
        let tokenizer = frontEnd.tokenizer
        var prompts: [[Int]] = [], texts: [String] = []
        switch request.prompt {
        case .texts(let strings):
            try frontEnd.checkChoiceCount(prompts: strings.count, n: settings.choiceCount)
            for string in strings {
                try Task.checkCancellation()
                prompts.append(tokenizer.encode(string))
            }
            texts = strings
        case .tokenLists(let lists):
            try frontEnd.checkChoiceCount(prompts: lists.count, n: settings.choiceCount)
            for list in lists {
                try Task.checkCancellation()
                try frontEnd.checkTokens(list, param: "prompt")
                texts.append(String(decoding: (try? tokenizer.decodeBytes(list)) ?? [], as: UTF8.self))
            }
            prompts = lists
        }
        guard !prompts.isEmpty else { throw APIError.invalid("The prompt list is empty.", param: "prompt") }
        let tokenLimits = try prompts.map { try settings.tokenLimit(promptCount: $0.count, limits: frontEnd.limits) }
        return Prepared(prompts: prompts, promptTexts: texts, tokenLimits: tokenLimits, settings: settings,
                        echoes: request.echo ?? false, returnsTokenIDs: request.fields.returnsTokenIDs ?? false, model: request.fields.model ?? frontEnd.modelNames[0])
    }

    /// Runs the request; `send` receives each streamed chunk when streaming, the one body otherwise.
    func run(_ prepared: Prepared, send: (JSONValue) async throws -> Void) async throws {
        let settings = prepared.settings
        let submission = try frontEnd.submit(prompts: prepared.prompts, tokenLimits: prepared.tokenLimits, settings: settings,
                                         promptLogprobs: prepared.echoes ? settings.logprobCount : nil)
        var runner = ChoiceRunner(frontEnd: frontEnd, submission: submission, stopStrings: settings.stopStrings)
        let id = ResponseFormatting.identifier("cmpl-"), created = ResponseFormatting.now
        let n = settings.choiceCount
        let label = ResponseFormatting.tokenLabel(frontEnd.tokenizer, asIDs: prepared.returnsTokenIDs)
        func envelope(_ choices: [JSONValue], usage: JSONValue?) -> JSONValue {
            var members: [(String, JSONValue)] = [("id", .string(id)), ("object", "text_completion"), ("created", .int(created)),
                                                  ("model", .string(prepared.model)), ("choices", .array(choices))]
            if let usage { members.append(("usage", usage)) }
            return .object(members)
        }
        let promptTotal = prepared.prompts.reduce(0) { $0 + $1.count }

        if settings.streams {
            var echoed = [Bool](repeating: !prepared.echoes, count: n * prepared.prompts.count)
            try await runner.run { delta, choices in
                let state = choices[delta.choice], prompt = delta.choice / n
                // An engine failure mid-stream becomes an error event, as vLLM sends it.
                if case .error(let message) = delta.finishReason { throw APIError.server(message) }
                var text = delta.text
                var entries: [TokenLogprobs?] = settings.logprobCount == nil ? [] : Array(state.logprobs[delta.tokens])
                var ids = Array(state.tokenIDs[delta.tokens])
                if !echoed[delta.choice] {
                    echoed[delta.choice] = true
                    text = prepared.promptTexts[prompt] + text
                    entries = [nil] + state.promptLogprobs.map { $0 } + entries
                    ids = prepared.prompts[prompt] + ids
                }
                let logprobs: JSONValue = settings.logprobCount == nil ? .null
                    : ResponseFormatting.completionLogprobs(entries, tokenIDs: ids, label: label, firstOffset: 0)
                try await send(envelope([.object([
                    ("index", .int(delta.choice)), ("text", .string(text)), ("logprobs", logprobs),
                    ("finish_reason", delta.finishReason.map { .string($0.name) } ?? .null),
                ])], usage: settings.includesUsage ? .null : nil))
            }
            if settings.includesUsage {
                let completion = runner.choices.reduce(0) { $0 + $1.tokenIDs.count }
                try await send(envelope([], usage: ResponseFormatting.usage(prompt: promptTotal, completion: completion)))
            }
            return
        }

        try await runner.run { _, _ in }
        if let error = ResponseFormatting.engineError(runner.choices) { throw error }
        let choices: [JSONValue] = runner.choices.enumerated().map { index, state in
            let prompt = index / n
            var text = state.text.text, entries: [TokenLogprobs?] = state.logprobs.map { $0 }, ids = state.tokenIDs
            if prepared.echoes {
                text = prepared.promptTexts[prompt] + text
                entries = [nil] + state.promptLogprobs.map { $0 } + entries
                ids = prepared.prompts[prompt] + ids
            }
            let logprobs: JSONValue = settings.logprobCount == nil ? .null
                : ResponseFormatting.completionLogprobs(entries, tokenIDs: ids, label: label, firstOffset: 0)
            return .object([("index", .int(index)), ("text", .string(text)), ("logprobs", logprobs),
                            ("finish_reason", .string(state.finishReason?.name ?? "abort"))])
        }
        let completion = runner.choices.reduce(0) { $0 + $1.tokenIDs.count }
        try await send(envelope(choices, usage: ResponseFormatting.usage(prompt: promptTotal, completion: completion)))
    }
}
