/// What the front end checks requests against.
public struct ServingLimits: Sendable {
    /// Prompt plus generated tokens of one sequence.
    public let maxModelLength: Int
    public let vocabularySize: Int
    /// Choices per prompt (`n`).
    public let maxChoices: Int
    /// Choices of one request over all its prompts (prompts × `n`).
    public let maxChoicesPerRequest: Int
    /// Top log-probabilities per token.
    public let maxLogprobs: Int

    public init(maxModelLength: Int, vocabularySize: Int, maxChoices: Int = 128, maxChoicesPerRequest: Int = 1024,
                maxLogprobs: Int = 20) {
        precondition(maxChoices >= 1 && maxChoicesPerRequest >= 1, "choice limits are positive")
        self.maxModelLength = maxModelLength
        self.vocabularySize = vocabularySize
        self.maxChoices = maxChoices
        self.maxChoicesPerRequest = maxChoicesPerRequest
        self.maxLogprobs = maxLogprobs
    }
}
