/// What the front end checks requests against.
public struct ServingLimits: Sendable {
    /// Prompt plus generated tokens of one sequence.
    public let maxModelLength: Int
    public let vocabularySize: Int
    /// Choices per request (`n`).
    public let maxChoices: Int
    /// Top log-probabilities per token.
    public let maxLogprobs: Int

    public init(maxModelLength: Int, vocabularySize: Int, maxChoices: Int = 128, maxLogprobs: Int = 20) {
        self.maxModelLength = maxModelLength
        self.vocabularySize = vocabularySize
        self.maxChoices = maxChoices
        self.maxLogprobs = maxLogprobs
    }
}
