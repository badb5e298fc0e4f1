import Checkpoint
import Compute

/// Port of transformers' `models/olmoe/modeling_olmoe.py`: RMSNorm over the whole q and k
/// projections, optional clamping of q/k/v, every layer sparse.
enum OLMoE {
    static func load(_ configuration: ModelConfiguration, decoder: DecoderConfiguration, moe: MoEConfiguration,
                     clipQKV: Double?, loader: WeightLoader) throws -> CausalLM {
        let loading = DecoderLoading(loader: loader, decoder: decoder)
        let layers = try (0..<decoder.layerCount).map { index in
            let attention = try loading.attention(layerIndex: index, queryKeyBias: decoder.hasAttentionBias,
                                                  outputBias: decoder.hasAttentionBias, queryKeyNorm: .wholeProjection,
                                                  clipLimit: clipQKV, slidingWindow: nil)
            let block = try QwenMoEBlock.load("model.layers.\(index).mlp", moe: moe, sharedExpert: false, loading: loading)
            return try loading.layer(index, attention: .multiHead(attention), feedForward: .sparse(block))
        }
        return try loading.model(configuration, layers: layers)
    }
}
