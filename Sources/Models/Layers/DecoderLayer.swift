public import Compute

/// One pre-norm transformer block: `h = x + attention(norm(x))`, `y = h + feedForward(norm(h))`.
public struct DecoderLayer {
    public enum FeedForward {
        case dense(GatedMLP)
        case sparse(SparseMoE)
    }

    public let inputNorm: RMSNorm
    public let attention: Attention
    public let postAttentionNorm: RMSNorm
    public let feedForward: FeedForward

    /// The routed experts' weights of a sparse layer.
    public var experts: ExpertWeights? {
        if case .sparse(let moe) = feedForward { return moe.experts }
        return nil
    }

    public init(inputNorm: RMSNorm, attention: Attention, postAttentionNorm: RMSNorm, feedForward: FeedForward) {
        self.inputNorm = inputNorm
        self.attention = attention
        self.postAttentionNorm = postAttentionNorm
        self.feedForward = feedForward
    }

    /// Writes the block's output into `out`, with `residual` (the same shape) as its middle
    /// state; everything else it makes is scratch released before it returns.
    public func forward(_ x: Tensor, _ context: ForwardContext, residual: Tensor, into out: Tensor) throws {
        let backend = context.backend
        let mark = backend.scratchMark()
        defer { backend.releaseScratch(to: mark) }
        let attended = try attention.forward(inputNorm.forward(x, context), context)
        try backend.add(x, attended, into: residual)
        let normed = try postAttentionNorm.forward(residual, context)
        let transformed: Tensor
        switch feedForward {
        case .dense(let mlp): transformed = try mlp.forward(normed, context)
        case .sparse(let moe): transformed = try moe.forward(normed, layer: attention.layerIndex, context)
        }
        try backend.add(residual, transformed, into: out)
    }
}
