import Checkpoint
import Compute

/// The weight-loading steps the supported architectures share, parameterised by their quirks.
/// Each architecture file says which quirks it has; nothing here branches on an architecture name.
struct DecoderLoading {
    let loader: WeightLoader
    let decoder: DecoderConfiguration

    var epsilon: Float { Float(decoder.rmsNormEpsilon) }

    func norm(_ name: String, width: Int) throws -> RMSNorm {
        RMSNorm(weight: try loader.load(name, Shape(width)), epsilon: epsilon)
    }

    func linear(_ prefix: String, outputs: Int, inputs: Int, hasBias: Bool) throws -> Linear {
        Linear(weight: try loader.load(prefix + ".weight", Shape(outputs, inputs)),
               bias: hasBias ? try loader.load(prefix + ".bias", Shape(outputs)) : nil)
    }

    enum QueryKeyNormWidth {
        case none, perHead, wholeProjection
    }

    /// - Parameter sinks: whether the layer has GPT-OSS's per-head attention sinks (`self_attn.sinks`).
    func attention(layerIndex: Int, queryKeyBias: Bool, outputBias: Bool, queryKeyNorm: QueryKeyNormWidth,
                   clipLimit: Double?, slidingWindow: Int?, sinks: Bool = false) throws -> Attention {
        let prefix = "model.layers.\(layerIndex).self_attn"
        let hidden = decoder.hiddenSize, headDim = decoder.headDim
        let queryWidth = decoder.headCount * headDim, kvWidth = decoder.kvHeadCount * headDim
        let norms: (RMSNorm, RMSNorm)?
        switch queryKeyNorm {
        case .none: norms = nil
        case .perHead: norms = (try norm(prefix + ".q_norm.weight", width: headDim), try norm(prefix + ".k_norm.weight", width: headDim))
        case .wholeProjection:
            norms = (try norm(prefix + ".q_norm.weight", width: queryWidth), try norm(prefix + ".k_norm.weight", width: kvWidth))
        }
        return Attention(
            layerIndex: layerIndex,
            query: try linear(prefix + ".q_proj", outputs: queryWidth, inputs: hidden, hasBias: queryKeyBias),
            key: try linear(prefix + ".k_proj", outputs: kvWidth, inputs: hidden, hasBias: queryKeyBias),
            value: try linear(prefix + ".v_proj", outputs: kvWidth, inputs: hidden, hasBias: queryKeyBias),
            output: try linear(prefix + ".o_proj", outputs: hidden, inputs: queryWidth, hasBias: outputBias),
            queryKeyNorm: norms,
            clipLimit: clipLimit.map { Float($0) },
            parameters: AttentionParameters(headCount: decoder.headCount, kvHeadCount: decoder.kvHeadCount, headDim: headDim,
                                            scale: 1 / Float(headDim).squareRoot(), slidingWindow: slidingWindow,
                                            sinks: sinks ? try loader.load(prefix + ".sinks", Shape(decoder.headCount)) : nil))
    }

    /// A gated MLP stored as `gate_proj`, `up_proj`, `down_proj` under `prefix`.
    func gatedMLP(_ prefix: String, intermediate: Int) throws -> GatedMLP {
        let hidden = decoder.hiddenSize
        let gateUp = try loader.concatenatingRows([
            (prefix + ".gate_proj.weight", Shape(intermediate, hidden)),
            (prefix + ".up_proj.weight", Shape(intermediate, hidden)),
        ])
        return GatedMLP(gateUp: Linear(weight: gateUp),
                        down: Linear(weight: try loader.load(prefix + ".down_proj.weight", Shape(hidden, intermediate))))
    }

    func layer(_ layerIndex: Int, attention: DecoderLayer.SelfAttention, feedForward: DecoderLayer.FeedForward) throws -> DecoderLayer {
        let prefix = "model.layers.\(layerIndex)"
        return DecoderLayer(
            inputNorm: try norm(prefix + ".input_layernorm.weight", width: decoder.hiddenSize),
            attention: attention,
            postAttentionNorm: try norm(prefix + ".post_attention_layernorm.weight", width: decoder.hiddenSize),
            feedForward: feedForward)
    }

    /// - Parameter rotaryDim: the width the rotary table covers (a head, or latent attention's rotary part).
    func model(_ configuration: ModelConfiguration, layers: [DecoderLayer], rotaryDim: Int? = nil) throws -> CausalLM {
        let vocabulary = decoder.vocabularySize, hidden = decoder.hiddenSize
        let embedding = try loader.load("model.embed_tokens.weight", Shape(vocabulary, hidden))
        let head = decoder.tiesWordEmbeddings
            ? embedding : try loader.load("lm_head.weight", Shape(vocabulary, hidden))
        return CausalLM(
            configuration: configuration, embedding: embedding, layers: layers,
            finalNorm: try norm("model.norm.weight", width: hidden), head: Linear(weight: head),
            rotary: try RotaryAngles.table(decoder.rope, rotaryDim: rotaryDim ?? decoder.headDim,
                                           positionCount: decoder.maxPositionCount, backend: loader.backend))
    }
}
