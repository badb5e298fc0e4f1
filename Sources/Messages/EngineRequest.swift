/// A request as the engine of one rank receives it: tokens in, every limit already resolved by
/// the front end (which also owns text, stop strings and the HTTP side).
public struct EngineRequest: Sendable {
    public let id: RequestID
    public let promptTokenIDs: [Int]
    public let sampling: SamplingParameters
    /// Generated tokens at most; the model length may end the request earlier.
    public let maxTokens: Int
    /// Stop tokens cannot be sampled before this many tokens are generated.
    public let minTokens: Int
    /// Tokens that end the request when sampled (end-of-sequence ids unless ignored, plus the client's).
    public let stopTokenIDs: [Int]
    /// Top log-probabilities reported per generated token; `nil` reports none.
    public let logprobCount: Int?
    /// Top log-probabilities reported per prompt token (the first has none); `nil` reports none.
    public let promptLogprobCount: Int?
    /// Whether each output carries the full logits its token was sampled from (parity tests).
    public let keepsLogits: Bool

    public init(id: RequestID, promptTokenIDs: [Int], sampling: SamplingParameters, maxTokens: Int, minTokens: Int = 0,
                stopTokenIDs: [Int] = [], logprobCount: Int? = nil, promptLogprobCount: Int? = nil,
                keepsLogits: Bool = false) {
        self.id = id
        self.promptTokenIDs = promptTokenIDs
        self.sampling = sampling
        self.maxTokens = maxTokens
        self.minTokens = minTokens
        self.stopTokenIDs = stopTokenIDs
        self.logprobCount = logprobCount
        self.promptLogprobCount = promptLogprobCount
        self.keepsLogits = keepsLogits
    }
}

/// Log-probabilities at one position: of the token that is there, and the most likely ones.
public struct TokenLogprobs: Sendable, Equatable {
    public let tokenID: Int
    public let logprob: Float
    public let top: [TopLogprob]

    public init(tokenID: Int, logprob: Float, top: [TopLogprob]) {
        self.tokenID = tokenID
        self.logprob = logprob
        self.top = top
    }
}

public struct TopLogprob: Sendable, Equatable {
    public let tokenID: Int
    public let logprob: Float

    public init(tokenID: Int, logprob: Float) {
        self.tokenID = tokenID
        self.logprob = logprob
    }
}

public enum FinishReason: Sendable, Equatable {
    /// A stop token (end of sequence included) or, in the front end, a stop string.
    case stop
    /// `maxTokens` or the model length reached.
    case length
    /// The client went away or asked for it.
    case abort
    /// The engine could not run the request; the message says why.
    case error(String)

    /// The OpenAI `finish_reason` word.
    public var name: String {
        switch self {
        case .stop: "stop"
        case .length: "length"
        case .abort: "abort"
        case .error: "error"
        }
    }
}

/// What one step produced for one request. The engine sends one per request per step in which
/// it sampled a token or finished; prompt log-probabilities come in the outputs of the steps that
/// computed the prompt.
public struct EngineOutput: Sendable {
    public let requestID: RequestID
    public var tokenIDs: [Int] = []
    public var logprobs: [TokenLogprobs] = []
    public var promptLogprobs: [TokenLogprobs] = []
    /// The logits of the sampled token's step, when the request keeps them.
    public var logits: [Float] = []
    public var finishReason: FinishReason?

    public init(requestID: RequestID) { self.requestID = requestID }

    /// The last output of a request that ends with no token: aborted, failed, or at its length.
    public static func finished(_ requestID: RequestID, _ reason: FinishReason) -> EngineOutput {
        var output = EngineOutput(requestID: requestID)
        output.finishReason = reason
        return output
    }
}

/// Receives a request's outputs on the engine's thread; must return quickly and never block.
public typealias OutputSink = @Sendable (EngineOutput) -> Void
