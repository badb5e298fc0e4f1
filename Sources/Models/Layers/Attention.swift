public import Compute

/// Multi-head attention with grouped KV heads, rotary positions and a paged KV cache.
public struct Attention {
    public let layerIndex: Int
    public let query: Linear
    public let key: Linear
    public let value: Linear
    public let output: Linear
    /// RMSNorm of q and k before rotary. The weight's width says over what: one head (Qwen3,
    /// `[headDim]`) or the whole projection (OLMoE, `[heads·headDim]`).
    public let queryKeyNorm: (query: RMSNorm, key: RMSNorm)?
    /// OLMoE's `clip_qkv`: q, k and v are clamped to ±limit after the norms.
    public let clipLimit: Float?
    public let parameters: AttentionParameters

    public init(layerIndex: Int, query: Linear, key: Linear, value: Linear, output: Linear,
                queryKeyNorm: (query: RMSNorm, key: RMSNorm)?, clipLimit: Float?, parameters: AttentionParameters) {
        self.layerIndex = layerIndex
        self.query = query
        self.key = key
        self.value = value
        self.output = output
        self.queryKeyNorm = queryKeyNorm
        self.clipLimit = clipLimit
        self.parameters = parameters
    }

    public func forward(_ x: Tensor, _ context: ForwardContext) throws -> Tensor {
        let backend = context.backend
        let tokenCount = x.shape[0], headDim = parameters.headDim
        var queries = try context.scratch(tokenCount, query.outputCount)     // [t, heads·headDim]
        var keys = try context.scratch(tokenCount, key.outputCount)          // [t, kvHeads·headDim]
        let values = try context.scratch(tokenCount, value.outputCount)      // [t, kvHeads·headDim]
        try backend.matmuls(x, Projection(weight: query.weight, bias: query.bias, out: queries),
                            Projection(weight: key.weight, bias: key.bias, out: keys),
                            Projection(weight: value.weight, bias: value.bias, out: values))
        let cache = context.caches[layerIndex]
        if clipLimit == nil, queryKeyNorm.map({ norms in
            norms.query.weight.elementCount == headDim && norms.key.weight.elementCount == headDim && norms.query.epsilon == norms.key.epsilon
        }) ?? true {
            // Per-head norms (or none): one operator, fused where the backend can.
            let norms = queryKeyNorm.map { QueryKeyNorms(query: $0.query.weight, key: $0.key.weight, epsilon: $0.query.epsilon) }
            try backend.prepareAttention(queries: queries, keys: keys, values: values, norms: norms, table: context.rotary,
                                         headDim: headDim, cache: cache, batch: context.batch)
        } else {
            if let (queryNorm, keyNorm) = queryKeyNorm {
                queries = try queryNorm.forward(queries, context)
                keys = try keyNorm.forward(keys, context)
            }
            if let clipLimit {
                try backend.clamp(queries, limit: clipLimit)
                try backend.clamp(keys, limit: clipLimit)
                try backend.clamp(values, limit: clipLimit)
            }
            try backend.rotary(queries, positions: context.batch.positions, table: context.rotary, headDim: headDim)
            try backend.rotary(keys, positions: context.batch.positions, table: context.rotary, headDim: headDim)
            try backend.storeKV(keys: keys, values: values, cache: cache, batch: context.batch)
        }
        let attended = try context.scratch(tokenCount, queries.shape[1])
        try backend.attention(queries, cache: cache, batch: context.batch, parameters: parameters, into: attended)
        return try output.forward(attended, context)
    }
}
