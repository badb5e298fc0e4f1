public import Compute

/// One pre-norm transformer block: `h = x + attention(norm(x))`, `y = h + feedForward(norm(h))`.
public struct DecoderLayer {
    public enum FeedForward {
        case dense(GatedMLP)
        case sparse(SparseMoE)
    }

    public enum SelfAttention {
        case multiHead(Attention)
        case latent(LatentAttention)

        public var layerIndex: Int {
            switch self {
            case .multiHead(let attention): attention.layerIndex
            case .latent(let attention): attention.layerIndex
            }
        }

        func forward(_ x: Tensor, _ context: ForwardContext) throws -> Tensor {
            switch self {
            case .multiHead(let attention): try attention.forward(x, context)
            case .latent(let attention): try attention.forward(x, context)
            }
        }
    }

    public let inputNorm: RMSNorm
    public let attention: SelfAttention
    public let postAttentionNorm: RMSNorm
    public let feedForward: FeedForward

    /// The routed experts' weights of a sparse layer.
    public var experts: ExpertWeights? {
        if case .sparse(let moe) = feedForward { return moe.experts }
        return nil
    }

    public init(inputNorm: RMSNorm, attention: SelfAttention, postAttentionNorm: RMSNorm, feedForward: FeedForward) {
        self.inputNorm = inputNorm
        self.attention = attention
        self.postAttentionNorm = postAttentionNorm
        self.feedForward = feedForward
    }

    /// One block on the residual stream, updated in place: the block's input is `stream`, plus
    /// `pending` when given (the previous block's feed-forward output, added here by the same
    /// launch as this block's first norm). On return `stream` holds `h = input + attention(norm(input))`
    /// and `out` (which may be `pending`) holds `feedForward(norm(h))`: the block's output is their
    /// sum, which the next block or the final norm adds. Everything else is scratch released
    /// before it returns.
    public func forward(stream: Tensor, pending: Tensor?, _ context: ForwardContext, into out: Tensor) throws {
        let backend = context.backend
        let mark = backend.scratchMark()
        defer { backend.releaseScratch(to: mark) }
        let normedInput = try pending.map { try inputNorm.forward(stream, adding: $0, sum: stream, context) }
            ?? inputNorm.forward(stream, context)
        let attended = try attention.forward(normedInput, context)
        let normed = try postAttentionNorm.forward(stream, adding: attended, sum: stream, context)
        switch feedForward {
        case .dense(let mlp): try mlp.forward(normed, context, into: out)
        case .sparse(let moe): try moe.forward(normed, layer: attention.layerIndex, context, into: out)
        }
    }
}
