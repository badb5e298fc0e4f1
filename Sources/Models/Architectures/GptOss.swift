import Checkpoint
import Compute

/// Port of transformers' `models/gpt_oss/modeling_gpt_oss.py`: attention sinks, sliding-window and
/// full layers in turn, biases on q/k/v/o, a biased router whose top-k logits are softmaxed (the
/// same as renormalising a softmax over all of them), and experts with biases and a clamped
/// SwiGLU in HF's fused, interleaved layout (reordered as they load: ``ExpertTensorNames/Layout``).
enum GptOss {
    static func load(_ configuration: ModelConfiguration, decoder: DecoderConfiguration, moe: MoEConfiguration,
                     slidingWindow: Int, slidingLayers: [Bool], loader: WeightLoader) throws -> CausalLM {
        let loading = DecoderLoading(loader: loader, decoder: decoder)
        let hidden = decoder.hiddenSize
        let layers = try (0..<decoder.layerCount).map { index in
            let attention = try loading.attention(layerIndex: index, queryKeyBias: decoder.hasAttentionBias,
                                                  outputBias: decoder.hasAttentionBias, queryKeyNorm: .none, clipLimit: nil,
                                                  slidingWindow: slidingLayers[index] ? slidingWindow : nil, sinks: true)
            let prefix = "model.layers.\(index).mlp"
            let names = ExpertTensorNames(prefix: prefix + ".experts", layout: .gptOss)
            let block = SparseMoE(
                router: try loading.linear(prefix + ".router", outputs: moe.expertCount, inputs: hidden, hasBias: true),
                experts: try loader.experts(count: moe.expertCount, hidden: hidden, intermediate: moe.expertIntermediateSize,
                                            names: names),
                expertNames: names, routing: moe.routing, sharedExpert: nil)
            return try loading.layer(index, attention: .multiHead(attention), feedForward: .sparse(block))
        }
        return try loading.model(configuration, layers: layers)
    }
}
