/// What the client saw of one request, timed as `vllm bench serve` times it (seconds).
public struct RequestRecord: Sendable {
    public var promptLength: Int
    public var success = false
    /// Seconds from the benchmark's start to this request's send.
    public var startTime = 0.0
    /// Arrival of the first event with a non-empty `choices`, from send.
    public var timeToFirstToken = 0.0
    /// Gaps between later token events (per event, not per token).
    public var interTokenLatencies: [Double] = []
    /// Last token event, from send.
    public var latency = 0.0
    /// `usage.completion_tokens` of the final event.
    public var outputTokens = 0
    public var error = ""

    public init(promptLength: Int) { self.promptLength = promptLength }
}
