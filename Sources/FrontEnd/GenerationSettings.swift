public import Messages
public import OpenAIAPI

/// The validated generation settings of one HTTP request, shared by its choices and prompts.
public struct GenerationSettings: Sendable {
    public let sampling: SamplingParameters
    /// `nil` means up to the model length.
    public let maxTokens: Int?
    public let minTokens: Int
    public let choiceCount: Int
    public let stopStrings: [String]
    public let stopTokenIDs: [Int]
    public let ignoresEOS: Bool
    public let logprobCount: Int?
    public let streams: Bool
    public let includesUsage: Bool

    /// Checks every field against OpenAI's and vLLM's rules; `defaultMaxTokens` is 16 for
    /// completions and `nil` (the rest of the model length) for chat.
    public init(_ fields: SamplingFields, logprobCount: Int?, defaultMaxTokens: Int?, limits: ServingLimits) throws {
        let temperature = fields.temperature ?? 1
        guard temperature >= 0, temperature <= Self.maxTemperature else {
            throw APIError.invalid("temperature must be in [0, \(Int(Self.maxTemperature))], got \(temperature).", param: "temperature")
        }
        let topP = fields.topP ?? 1
        guard topP > 0, topP <= 1 else { throw APIError.invalid("top_p must be in (0, 1], got \(topP).", param: "top_p") }
        var topK = fields.topK
        if let k = topK {
            // vLLM's convention: -1 and 0 mean "no limit".
            guard k >= -1 else { throw APIError.invalid("top_k must be -1 (off) or at least 1, got \(k).", param: "top_k") }
            if k <= 0 { topK = nil }
        }
        try Self.requireDefault(fields.repetitionPenalty, 1, "repetition_penalty")
        try Self.requireDefault(fields.presencePenalty, 0, "presence_penalty")
        try Self.requireDefault(fields.frequencyPenalty, 0, "frequency_penalty")
        sampling = SamplingParameters(temperature: Float(temperature), topP: Float(topP), topK: topK,
                                      seed: fields.seed.map { UInt64(bitPattern: Int64($0)) })

        let maxTokens = fields.maxCompletionTokens ?? fields.maxTokens ?? defaultMaxTokens
        if let maxTokens, maxTokens < 1 {
            let param = fields.maxCompletionTokens != nil ? "max_completion_tokens" : "max_tokens"
            throw APIError.invalid("\(param) must be at least 1, got \(maxTokens).", param: param)
        }
        self.maxTokens = maxTokens
        minTokens = fields.minTokens ?? 0
        guard minTokens >= 0 else { throw APIError.invalid("min_tokens must be ≥ 0, got \(minTokens).", param: "min_tokens") }
        if let maxTokens, minTokens > maxTokens {
            throw APIError.invalid("min_tokens (\(minTokens)) must not exceed max_tokens (\(maxTokens)).", param: "min_tokens")
        }
        choiceCount = fields.n ?? 1
        guard choiceCount >= 1, choiceCount <= limits.maxChoices else {
            throw APIError.invalid("n must be in 1...\(limits.maxChoices), got \(choiceCount).", param: "n")
        }
        stopStrings = fields.stop?.strings ?? []
        guard !stopStrings.contains("") else { throw APIError.invalid("stop strings must not be empty.", param: "stop") }
        stopTokenIDs = fields.stopTokenIDs ?? []
        if let bad = stopTokenIDs.first(where: { $0 < 0 || $0 >= limits.vocabularySize }) {
            throw APIError.invalid("stop_token_ids holds \(bad), outside the vocabulary of \(limits.vocabularySize).",
                                   param: "stop_token_ids")
        }
        ignoresEOS = fields.ignoreEOS ?? false
        if let logprobCount, logprobCount < 0 || logprobCount > limits.maxLogprobs {
            throw APIError.invalid("logprobs must be in 0...\(limits.maxLogprobs), got \(logprobCount).", param: "logprobs")
        }
        self.logprobCount = logprobCount
        streams = fields.stream ?? false
        if fields.streamOptions != nil && !streams {
            throw APIError.invalid("stream_options can only be given when stream is true.", param: "stream_options")
        }
        includesUsage = fields.streamOptions?.includeUsage ?? false
    }

    /// Beyond this, sampling is uniform to float precision; larger values are more likely a client's bug.
    public static let maxTemperature = 1e6

    private static func requireDefault(_ value: Double?, _ neutral: Double, _ name: String) throws {
        if let value, value != neutral {
            throw APIError.invalid("\(name) other than \(neutral) is not supported.", param: name)
        }
    }

    /// The generated-token limit of a prompt of `promptCount` tokens, refusing prompts that do not fit.
    public func tokenLimit(promptCount: Int, limits: ServingLimits) throws -> Int {
        let room = limits.maxModelLength - promptCount
        guard promptCount > 0 else { throw APIError.invalid("The prompt is empty.", param: "prompt") }
        guard room >= 1 else {
            throw APIError.invalid("This model's maximum context length is \(limits.maxModelLength) tokens. However, your "
                                   + "prompt has \(promptCount) tokens, which leaves no room to generate.", param: "prompt")
        }
        guard let maxTokens else { return room }
        guard maxTokens <= room else {
            throw APIError.invalid("This model's maximum context length is \(limits.maxModelLength) tokens. However, you "
                                   + "requested \(promptCount + min(maxTokens, Int.max - promptCount)) tokens "
                                   + "(\(promptCount) in the prompt, \(maxTokens) in the completion). Please reduce the "
                                   + "prompt or max_tokens.", param: "max_tokens")
        }
        return maxTokens
    }
}
