public import Compute

/// DeepSeek's multi-head latent attention, run in the latent space: the cache holds one
/// normalised latent and one rotated rotary key per token, the key up-projection is absorbed into
/// each head's query and the value up-projection applied to each head's attended latent, as
/// FlashMLA's and vLLM's decode do. Every head reads the same cached row: multi-query attention
/// over `latent + rope` values.
public struct LatentAttention {
    public enum Query {
        /// `q_proj`.
        case direct(Linear)
        /// `q_a_proj`, `q_a_layernorm`, `q_b_proj`.
        case lowRank(down: Linear, norm: RMSNorm, up: Linear)
    }

    public let layerIndex: Int
    /// `[t, heads·(nope + rope)]` from the hidden state.
    public let query: Query
    /// `kv_a_proj_with_mqa`: `[t, latent + rope]`.
    public let latent: Linear
    public let latentNorm: RMSNorm
    /// Each head's key up-projection transposed, `[heads, latent, nope]`: a head's no-rope query
    /// times it is the query in the latent space.
    public let absorbedKey: Tensor
    /// Each head's value up-projection, `[heads, value, latent]`.
    public let valueUp: Tensor
    public let output: Linear
    public let parameters: LatentAttentionParameters

    public init(layerIndex: Int, query: Query, latent: Linear, latentNorm: RMSNorm, absorbedKey: Tensor, valueUp: Tensor,
                output: Linear, parameters: LatentAttentionParameters) {
        self.layerIndex = layerIndex
        self.query = query
        self.latent = latent
        self.latentNorm = latentNorm
        self.absorbedKey = absorbedKey
        self.valueUp = valueUp
        self.output = output
        self.parameters = parameters
    }

    public func forward(_ x: Tensor, _ context: ForwardContext) throws -> Tensor {
        let backend = context.backend, tokenCount = x.shape[0], p = parameters
        let queries: Tensor
        switch query {
        case .direct(let projection): queries = try projection.forward(x, context)
        case .lowRank(let down, let norm, let up): queries = try up.forward(try norm.forward(try down.forward(x, context), context), context)
        }
        let compressed = try latent.forward(x, context)
        let latentQueries = try context.scratch(tokenCount, p.headCount * p.cacheWidth)
        try backend.headMatmul(queries, columns: HeadColumns(width: p.nopeWidth, stride: p.nopeWidth + p.ropeWidth), weight: absorbedKey,
                               into: latentQueries, columns: HeadColumns(width: p.latentWidth, stride: p.cacheWidth))
        let cache = context.caches[layerIndex]
        try backend.prepareLatentAttention(queries: queries, latent: compressed, norm: latentNorm.weight, epsilon: latentNorm.epsilon,
                                           table: context.rotary, parameters: p, cache: cache, batch: context.batch,
                                           into: latentQueries)
        let attendedLatent = try context.scratch(tokenCount, p.headCount * p.latentWidth)
        try backend.latentAttention(latentQueries, cache: cache, batch: context.batch, parameters: p, into: attendedLatent)
        let attended = try context.scratch(tokenCount, p.headCount * p.valueWidth)
        try backend.headMatmul(attendedLatent, columns: HeadColumns(width: p.latentWidth, stride: p.latentWidth), weight: valueUp,
                               into: attended, columns: HeadColumns(width: p.valueWidth, stride: p.valueWidth))
        return try output.forward(attended, context)
    }
}
