/// How the next token is chosen from a step's logits.
public struct SamplingParameters: Sendable, Equatable {
    /// 0 means greedy.
    public let temperature: Float
    /// Nucleus sampling: keep the most likely tokens whose probabilities add up to `topP`; 1 keeps all.
    public let topP: Float
    /// Keep the `topK` most likely tokens; `nil` keeps all.
    public let topK: Int?
    /// Seeds the request's own generator, so the same seed gives the same tokens.
    public let seed: UInt64?

    public static let greedy = SamplingParameters(temperature: 0, topP: 1, topK: nil, seed: nil)

    public init(temperature: Float, topP: Float, topK: Int?, seed: UInt64?) {
        self.temperature = temperature
        self.topP = topP
        self.topK = topK
        self.seed = seed
    }

    public enum ValidationError: Error, CustomStringConvertible, Equatable {
        case temperature(Float), topP(Float), topK(Int)

        public var description: String {
            switch self {
            case .temperature(let value): "temperature must be ≥ 0 and finite, got \(value)"
            case .topP(let value): "top-p must be in (0, 1], got \(value)"
            case .topK(let value): "top-k must be ≥ 1, got \(value)"
            }
        }
    }

    public func validated() throws -> SamplingParameters {
        guard temperature >= 0, temperature.isFinite else { throw ValidationError.temperature(temperature) }
        guard topP > 0, topP <= 1 else { throw ValidationError.topP(topP) }
        if let topK, topK < 1 { throw ValidationError.topK(topK) }
        return self
    }

    public var isGreedy: Bool { temperature == 0 }
}
