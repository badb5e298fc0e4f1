import Checkpoint
import Compute

/// Port of transformers' `models/qwen3_moe/modeling_qwen3_moe.py`: per-head q/k RMSNorm, softmax
/// top-k routing with optional renormalisation, dense MLP on `mlp_only_layers`.
enum Qwen3MoE {
    static func load(_ configuration: ModelConfiguration, decoder: DecoderConfiguration, moe: MoEConfiguration,
                     loader: WeightLoader) throws -> CausalLM {
        let loading = DecoderLoading(loader: loader, decoder: decoder)
        let layers = try (0..<decoder.layerCount).map { index in
            let attention = try loading.attention(layerIndex: index, queryKeyBias: decoder.hasAttentionBias,
                                                  outputBias: decoder.hasAttentionBias, queryKeyNorm: .perHead,
                                                  clipLimit: nil, slidingWindow: nil)
            let prefix = "model.layers.\(index).mlp"
            let feedForward: DecoderLayer.FeedForward = moe.isSparse(layerIndex: index)
                ? .sparse(try QwenMoEBlock.load(prefix, moe: moe, sharedExpert: false, loading: loading))
                : .dense(try loading.gatedMLP(prefix, intermediate: moe.denseIntermediateSize))
            return try loading.layer(index, attention: .multiHead(attention), feedForward: feedForward)
        }
        return try loading.model(configuration, layers: layers)
    }
}

/// The MoE block of the Qwen family (`mlp.gate`, `mlp.experts.{e}.{gate,up,down}_proj`,
/// optionally `mlp.shared_expert` and `mlp.shared_expert_gate`); OLMoE names its block the same way.
enum QwenMoEBlock {
    static func load(_ prefix: String, moe: MoEConfiguration, sharedExpert: Bool, loading: DecoderLoading) throws -> SparseMoE {
        let hidden = loading.decoder.hiddenSize
        let names = ExpertTensorNames(prefix: prefix + ".experts")
        let experts = try loading.loader.experts(count: moe.expertCount, hidden: hidden, intermediate: moe.expertIntermediateSize,
                                                 names: names)
        var shared: SparseMoE.SharedExpert?
        if sharedExpert, let width = moe.sharedExpertIntermediateSize {
            shared = SparseMoE.SharedExpert(
                mlp: try loading.gatedMLP(prefix + ".shared_expert", intermediate: width),
                gate: try loading.linear(prefix + ".shared_expert_gate", outputs: 1, inputs: hidden, hasBias: false))
        }
        return SparseMoE(
            router: try loading.linear(prefix + ".gate", outputs: moe.expertCount, inputs: hidden, hasBias: false),
            experts: experts,
            expertNames: names,
            routing: .init(topK: moe.topK, isRenormalized: moe.normalizesTopKProbabilities, scoring: .softmax),
            sharedExpert: shared)
    }
}
