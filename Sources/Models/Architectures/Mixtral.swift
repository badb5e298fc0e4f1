import Checkpoint
import Compute

/// Port of transformers' `models/mixtral/modeling_mixtral.py`: experts under
/// `block_sparse_moe` with `w1` (gate), `w3` (up), `w2` (down), top-k weights renormalised,
/// optional sliding-window attention.
enum Mixtral {
    static func load(_ configuration: ModelConfiguration, decoder: DecoderConfiguration, moe: MoEConfiguration,
                     slidingWindow: Int?, loader: WeightLoader) throws -> CausalLM {
        let loading = DecoderLoading(loader: loader, decoder: decoder)
        let hidden = decoder.hiddenSize
        let layers = try (0..<decoder.layerCount).map { index in
            let attention = try loading.attention(layerIndex: index, queryKeyBias: false, outputBias: false,
                                                  queryKeyNorm: .none, clipLimit: nil, slidingWindow: slidingWindow)
            // transformers 5 saves Mixtral's block as `mlp` with fused experts; published checkpoints use `block_sparse_moe`.
            let legacy = "model.layers.\(index).block_sparse_moe"
            let prefix = loader.source.contains(legacy + ".gate.weight") ? legacy : "model.layers.\(index).mlp"
            let names = ExpertTensorNames(prefix: prefix + ".experts", gate: "w1", up: "w3", down: "w2")
            let experts = try loader.experts(count: moe.expertCount, hidden: hidden, intermediate: moe.expertIntermediateSize,
                                             names: names)
            let block = SparseMoE(
                router: try loading.linear(prefix + ".gate", outputs: moe.expertCount, inputs: hidden, hasBias: false),
                experts: experts,
                expertNames: names,
                routing: .init(topK: moe.topK, isRenormalized: true, scoring: .softmax),
                sharedExpert: nil)
            return try loading.layer(index, attention: .multiHead(attention), feedForward: .sparse(block))
        }
        return try loading.model(configuration, layers: layers)
    }
}
