import Checkpoint
import Compute

/// Port of transformers' `models/qwen2_moe/modeling_qwen2_moe.py`: q/k/v bias (not on o), a shared
/// expert added with a sigmoid gate, no top-k renormalisation unless `norm_topk_prob`.
enum Qwen2MoE {
    static func load(_ configuration: ModelConfiguration, decoder: DecoderConfiguration, moe: MoEConfiguration,
                     loader: WeightLoader) throws -> CausalLM {
        let loading = DecoderLoading(loader: loader, decoder: decoder)
        let layers = try (0..<decoder.layerCount).map { index in
            let attention = try loading.attention(layerIndex: index, queryKeyBias: true, outputBias: false,
                                                  queryKeyNorm: .none, clipLimit: nil, slidingWindow: nil)
            let prefix = "model.layers.\(index).mlp"
            let feedForward: DecoderLayer.FeedForward = moe.isSparse(layerIndex: index)
                ? .sparse(try QwenMoEBlock.load(prefix, moe: moe, sharedExpert: true, loading: loading))
                : .dense(try loading.gatedMLP(prefix, intermediate: moe.denseIntermediateSize))
            return try loading.layer(index, attention: .multiHead(attention), feedForward: feedForward)
        }
        return try loading.model(configuration, layers: layers)
    }
}
