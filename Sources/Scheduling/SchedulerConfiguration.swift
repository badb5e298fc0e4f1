/// The limits one rank's scheduler works within.
public struct SchedulerConfiguration: Sendable, Equatable {
    /// Tokens computed in one step, over all sequences (prefill chunks and decodes).
    public let maxBatchedTokens: Int
    /// Sequences in the running set at once.
    public let maxSequences: Int
    /// Prompt plus generated tokens of one sequence.
    public let maxModelLength: Int
    /// Automatic prefix caching (vLLM's `--enable-prefix-caching`, on by default as there).
    public let cachesPrefixes: Bool

    public init(maxBatchedTokens: Int, maxSequences: Int, maxModelLength: Int, cachesPrefixes: Bool = true) {
        precondition(maxBatchedTokens > 0 && maxSequences > 0 && maxModelLength > 0, "scheduler limits must be positive")
        self.maxBatchedTokens = maxBatchedTokens
        self.maxSequences = maxSequences
        self.maxModelLength = maxModelLength
        self.cachesPrefixes = cachesPrefixes
    }
}
