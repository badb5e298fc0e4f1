import Checkpoint
import Compute

/// Port of transformers' `models/deepseek_v2/modeling_deepseek_v2.py` and
/// `models/deepseek_v3/modeling_deepseek_v3.py`: latent attention, routed experts with DeepSeek's
/// routing (`MoEConfiguration` says which), shared experts added ungated, the first layers dense.
///
/// Interleaved rotary dimensions (pairs `2i, 2i + 1`) are reordered to two halves as the weights
/// load, rows of the projections that make them: the rotation then is the one every other model
/// uses, and queries and keys are permuted alike, so their dot products are unchanged.
enum DeepSeek {
    static func load(_ configuration: ModelConfiguration, decoder: DecoderConfiguration, moe: MoEConfiguration,
                     attention: LatentAttentionConfiguration, loader: WeightLoader) throws -> CausalLM {
        let loading = DecoderLoading(loader: loader, decoder: decoder)
        let layers = try (0..<decoder.layerCount).map { index in
            let prefix = "model.layers.\(index).mlp"
            let feedForward: DecoderLayer.FeedForward = moe.isSparse(layerIndex: index)
                ? .sparse(try sparseBlock(prefix, moe: moe, loading: loading))
                : .dense(try loading.gatedMLP(prefix, intermediate: moe.denseIntermediateSize))
            return try loading.layer(index, attention: .latent(try latentAttention(index, attention, loading: loading)),
                                     feedForward: feedForward)
        }
        return try loading.model(configuration, layers: layers, rotaryDim: attention.ropeHeadDim)
    }

    static func latentAttention(_ layerIndex: Int, _ shape: LatentAttentionConfiguration, loading: DecoderLoading) throws -> LatentAttention {
        let prefix = "model.layers.\(layerIndex).self_attn"
        let decoder = loading.decoder, loader = loading.loader
        let hidden = decoder.hiddenSize, heads = decoder.headCount, bias = decoder.hasAttentionBias
        let latentWidth = shape.latentWidth, rope = shape.ropeHeadDim, nope = shape.nopeHeadDim, value = shape.valueHeadDim
        // transformers' q_a_layernorm and kv_a_layernorm keep RMSNorm's default epsilon, not rms_norm_eps.
        let bottleneckEpsilon: Float = 1e-6
        let queryOrder = rowOrder(rows: heads * shape.queryHeadDim, interleaved: shape.ropeIsInterleaved,
                                  ropeStarts: (0..<heads).map { $0 * shape.queryHeadDim + nope }, rope: rope)
        let query: LatentAttention.Query
        if let rank = shape.queryRank {
            query = .lowRank(
                down: try loading.linear(prefix + ".q_a_proj", outputs: rank, inputs: hidden, hasBias: bias),
                norm: RMSNorm(weight: try loader.load(prefix + ".q_a_layernorm.weight", Shape(rank)), epsilon: bottleneckEpsilon),
                up: Linear(weight: try loader.loadRows(prefix + ".q_b_proj.weight", Shape(heads * shape.queryHeadDim, rank), order: queryOrder)))
        } else {
            query = .direct(Linear(weight: try loader.loadRows(prefix + ".q_proj.weight", Shape(heads * shape.queryHeadDim, hidden),
                                                               order: queryOrder)))
        }
        let latentOrder = rowOrder(rows: latentWidth + rope, interleaved: shape.ropeIsInterleaved, ropeStarts: [latentWidth], rope: rope)
        let latent = Linear(
            weight: try loader.loadRows(prefix + ".kv_a_proj_with_mqa.weight", Shape(latentWidth + rope, hidden), order: latentOrder),
            bias: bias ? try loader.loadRows(prefix + ".kv_a_proj_with_mqa.bias", Shape(latentWidth + rope), order: latentOrder) : nil)
        // kv_b_proj `[heads·(nope + value), latent]`: each head's nope key rows, then its value rows.
        let up = try loader.hostFloats(prefix + ".kv_b_proj.weight", Shape(heads * (nope + value), latentWidth))
        var absorbedKey = [Float](repeating: 0, count: heads * latentWidth * nope)
        var valueUp = [Float](repeating: 0, count: heads * value * latentWidth)
        for head in 0..<heads {
            let base = head * (nope + value) * latentWidth
            for row in 0..<nope {
                for column in 0..<latentWidth {
                    absorbedKey[(head * latentWidth + column) * nope + row] = up[base + row * latentWidth + column]
                }
            }
            for row in 0..<value {
                for column in 0..<latentWidth {
                    valueUp[(head * value + row) * latentWidth + column] = up[base + (nope + row) * latentWidth + column]
                }
            }
        }
        return LatentAttention(
            layerIndex: layerIndex, query: query, latent: latent,
            latentNorm: RMSNorm(weight: try loader.load(prefix + ".kv_a_layernorm.weight", Shape(latentWidth)), epsilon: bottleneckEpsilon),
            absorbedKey: try loader.makeWeight(absorbedKey, Shape(heads, latentWidth, nope)),
            valueUp: try loader.makeWeight(valueUp, Shape(heads, value, latentWidth)),
            output: try loading.linear(prefix + ".o_proj", outputs: hidden, inputs: heads * value, hasBias: bias),
            parameters: LatentAttentionParameters(headCount: heads, nopeWidth: nope, ropeWidth: rope, latentWidth: latentWidth,
                                                  valueWidth: value, scale: Float(shape.scale)))
    }

    /// Which checkpoint row each loaded row is: the identity, except that each rotary block of
    /// `rope` rows starting at `ropeStarts` has its even rows first, then its odd rows.
    static func rowOrder(rows: Int, interleaved: Bool, ropeStarts: [Int], rope: Int) -> [Int]? {
        guard interleaved else { return nil }
        var order = Array(0..<rows)
        for start in ropeStarts {
            for index in 0..<(rope / 2) {
                order[start + index] = start + 2 * index
                order[start + rope / 2 + index] = start + 2 * index + 1
            }
        }
        return order
    }

    static func sparseBlock(_ prefix: String, moe: MoEConfiguration, loading: DecoderLoading) throws -> SparseMoE {
        let hidden = loading.decoder.hiddenSize
        let names = ExpertTensorNames(prefix: prefix + ".experts")
        let experts = try loading.loader.experts(count: moe.expertCount, hidden: hidden, intermediate: moe.expertIntermediateSize,
                                                 names: names)
        let shared = try moe.sharedExpertIntermediateSize.map { width in
            SparseMoE.SharedExpert(mlp: try loading.gatedMLP(prefix + ".shared_experts", intermediate: width), gate: nil)
        }
        return SparseMoE(
            router: try loading.linear(prefix + ".gate", outputs: moe.expertCount, inputs: hidden, hasBias: false),
            correctionBias: moe.hasCorrectionBias
                ? try loading.loader.load(prefix + ".gate.e_score_correction_bias", Shape(moe.expertCount)) : nil,
            experts: experts, expertNames: names, routing: moe.routing, sharedExpert: shared)
    }
}
