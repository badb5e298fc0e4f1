/// A rank's engine figures, as of its last step.
public struct EngineStatistics: Sendable, Equatable {
    public var blockCount: Int
    public var stepCount = 0
    public var lastStepSeconds = 0.0
    public var runningCount = 0
    public var waitingCount = 0
    public var usedBlocks = 0
    public var preemptionCount = 0
    /// Prompt tokens looked up in the prefix cache and found there, since the engine started.
    public var prefixQueryTokens = 0
    public var prefixHitTokens = 0
    /// Tokens sampled and requests ended since the engine started.
    public var generatedTokenCount = 0
    public var finishedRequestCount = 0
    /// Expert-parallel traffic this rank sent, and the time its exchanges took.
    public var exchangedBytes = 0
    public var exchangeSeconds = 0.0
    /// Mean over max of rank loads in the expert-load window (1 without expert parallelism).
    public var expertBalancedness = 1.0
    /// EPLB rearrangements planned, expert copies this rank received, and seconds spent moving them.
    public var expertRearrangements = 0
    public var expertsReceived = 0
    public var expertMoveSeconds = 0.0

    public init(blockCount: Int) { self.blockCount = blockCount }

    public var cacheUsage: Double { blockCount == 0 ? 0 : Double(usedBlocks) / Double(blockCount) }
    /// Hit tokens over queried tokens (0 before the first query).
    public var prefixHitRate: Double { prefixQueryTokens == 0 ? 0 : Double(prefixHitTokens) / Double(prefixQueryTokens) }
}
