public import Compute

/// A checkpoint's `config.json`, decoded for one of the supported architectures.
///
/// Each case keeps the architecture's quirks explicit; `Models` turns it into layers.
public enum ModelConfiguration: Sendable, Equatable {
    /// `Qwen3MoeForCausalLM`: per-head q/k RMSNorm, no attention bias by default.
    case qwen3MoE(DecoderConfiguration, MoEConfiguration)
    /// `MixtralForCausalLM`: every layer sparse, top-k weights always renormalised, optional sliding window.
    case mixtral(DecoderConfiguration, MoEConfiguration, slidingWindow: Int?)
    /// `Qwen2MoeForCausalLM`: q/k/v bias, a shared expert with a sigmoid gate.
    case qwen2MoE(DecoderConfiguration, MoEConfiguration)
    /// `OlmoeForCausalLM`: RMSNorm over the whole q and k projections, optional q/k/v clipping.
    case olmoE(DecoderConfiguration, MoEConfiguration, clipQKV: Double?)
    /// `DeepseekV2ForCausalLM`: latent attention, softmax routing (optionally group-limited),
    /// shared experts, the first layers dense.
    case deepseekV2(DecoderConfiguration, MoEConfiguration, LatentAttentionConfiguration)
    /// `DeepseekV3ForCausalLM` (and Kimi-K2): V2's shape with sigmoid routing, a correction bias,
    /// groups scored by their two best experts, and a query bottleneck.
    case deepseekV3(DecoderConfiguration, MoEConfiguration, LatentAttentionConfiguration)
    /// `GptOssForCausalLM`: attention sinks, sliding-window and full layers (`slidingLayers[i]`),
    /// biases everywhere, a biased router whose top-k logits are softmaxed, clamped SwiGLU experts.
    case gptOss(DecoderConfiguration, MoEConfiguration, slidingWindow: Int, slidingLayers: [Bool])

    public static let supportedArchitectures = [
        "Qwen3MoeForCausalLM", "MixtralForCausalLM", "Qwen2MoeForCausalLM", "OlmoeForCausalLM", "DeepseekV2ForCausalLM",
        "DeepseekV3ForCausalLM", "GptOssForCausalLM",
    ]

    public var decoder: DecoderConfiguration {
        switch self {
        case .qwen3MoE(let decoder, _), .mixtral(let decoder, _, _), .qwen2MoE(let decoder, _), .olmoE(let decoder, _, _),
             .deepseekV2(let decoder, _, _), .deepseekV3(let decoder, _, _), .gptOss(let decoder, _, _, _):
            decoder
        }
    }

    public var moe: MoEConfiguration {
        switch self {
        case .qwen3MoE(_, let moe), .mixtral(_, let moe, _), .qwen2MoE(_, let moe), .olmoE(_, let moe, _),
             .deepseekV2(_, let moe, _), .deepseekV3(_, let moe, _), .gptOss(_, let moe, _, _):
            moe
        }
    }

    public var architectureName: String {
        switch self {
        case .qwen3MoE: "Qwen3MoeForCausalLM"
        case .mixtral: "MixtralForCausalLM"
        case .qwen2MoE: "Qwen2MoeForCausalLM"
        case .olmoE: "OlmoeForCausalLM"
        case .deepseekV2: "DeepseekV2ForCausalLM"
        case .deepseekV3: "DeepseekV3ForCausalLM"
        case .gptOss: "GptOssForCausalLM"
        }
    }

    /// What each layer caches per token: `width` values of keys and as many of values, or for
    /// latent attention one row of `width` (its latent and rotary key) that serves as both.
    public var cacheRow: (width: Int, holdsValues: Bool) {
        if let latent = latentAttention { return (latent.latentWidth + latent.ropeHeadDim, false) }
        return (decoder.kvHeadCount * decoder.headDim, true)
    }

    /// The latent attention of the DeepSeek family; `nil` for multi-head attention.
    public var latentAttention: LatentAttentionConfiguration? {
        switch self {
        case .deepseekV2(_, _, let attention), .deepseekV3(_, _, let attention): attention
        default: nil
        }
    }

    /// Reads `folder/config.json`.
    public init(folder: String) throws {
        try self.init(ConfigurationFields(contentsOf: folder + "/config.json"))
    }

    public init(_ fields: ConfigurationFields) throws {
        let name: String
        if let first = (try? fields.optionalStringList("architectures"))??.first {
            name = first
        } else if let modelType = try fields.optionalString("model_type") {
            name = Self.architectureByModelType[modelType] ?? modelType
        } else {
            throw CheckpointError.badConfiguration(file: fields.file, field: "architectures", reason: "missing, and no model_type")
        }
        switch name {
        case "Qwen3MoeForCausalLM":
            let decoder = try DecoderConfiguration(fields, defaultRopeTheta: 10_000, defaultAttentionBias: false)
            self = .qwen3MoE(decoder, try Self.qwenMoE(fields, sharedExpert: false))
        case "Qwen2MoeForCausalLM":
            let decoder = try DecoderConfiguration(fields, defaultRopeTheta: 10_000, defaultAttentionBias: true)
            self = .qwen2MoE(decoder, try Self.qwenMoE(fields, sharedExpert: true))
        case "MixtralForCausalLM":
            let decoder = try DecoderConfiguration(fields, defaultRopeTheta: 1_000_000, defaultAttentionBias: false)
            let intermediate = try fields.positiveInt("intermediate_size")
            let moe = try MoEConfiguration(
                expertCount: fields.positiveInt("num_local_experts", "num_experts"),
                topK: fields.positiveInt("num_experts_per_tok"),
                expertIntermediateSize: intermediate, normalizesTopKProbabilities: true,
                denseIntermediateSize: intermediate, sparseLayers: .everyStep(1, except: []),
                sharedExpertIntermediateSize: nil, file: fields.file)
            self = .mixtral(decoder, moe, slidingWindow: try fields.optionalInt("sliding_window"))
        case "OlmoeForCausalLM":
            let decoder = try DecoderConfiguration(fields, defaultRopeTheta: 10_000, defaultAttentionBias: false)
            let intermediate = try fields.positiveInt("intermediate_size")
            let moe = try MoEConfiguration(
                expertCount: fields.positiveInt("num_experts", "num_local_experts"),
                topK: fields.positiveInt("num_experts_per_tok"),
                expertIntermediateSize: intermediate,
                normalizesTopKProbabilities: fields.bool("norm_topk_prob", default: false),
                denseIntermediateSize: intermediate, sparseLayers: .everyStep(1, except: []),
                sharedExpertIntermediateSize: nil, file: fields.file)
            self = .olmoE(decoder, moe, clipQKV: try fields.optionalDouble("clip_qkv"))
        case "DeepseekV2ForCausalLM":
            let decoder = try DecoderConfiguration(fields, defaultRopeTheta: 10_000, defaultAttentionBias: false)
            let groups: ExpertGroups?
            switch try fields.optionalString("topk_method") ?? "greedy" {
            case "greedy": groups = nil
            case "group_limited_greedy":
                groups = ExpertGroups(count: try fields.positiveInt("n_group"), selected: try fields.positiveInt("topk_group"), score: .maximum)
            case let other:
                throw CheckpointError.badConfiguration(file: fields.file, field: "topk_method",
                                                       reason: "unsupported '\(other)' (supported: greedy, group_limited_greedy)")
            }
            self = .deepseekV2(decoder, try Self.deepSeekMoE(fields, scoring: .softmax, groups: groups, correctionBias: false),
                               try LatentAttentionConfiguration(fields, interleavedByDefault: true))
        case "DeepseekV3ForCausalLM":
            let decoder = try DecoderConfiguration(fields, defaultRopeTheta: 10_000, defaultAttentionBias: false)
            let groups = ExpertGroups(count: try fields.int("n_group", default: 1), selected: try fields.int("topk_group", default: 1),
                                      score: .topTwoSum)
            self = .deepseekV3(decoder, try Self.deepSeekMoE(fields, scoring: .sigmoid, groups: groups, correctionBias: true),
                               try LatentAttentionConfiguration(fields, interleavedByDefault: true))
        case "GptOssForCausalLM":
            let decoder = try DecoderConfiguration(fields, defaultRopeTheta: 150_000, defaultAttentionBias: true)
            let intermediate = try fields.positiveInt("intermediate_size")
            let moe = try MoEConfiguration(
                expertCount: fields.positiveInt("num_local_experts"), topK: fields.positiveInt("num_experts_per_tok"),
                expertIntermediateSize: intermediate, normalizesTopKProbabilities: true, denseIntermediateSize: intermediate,
                sparseLayers: .everyStep(1, except: []), sharedExpertIntermediateSize: nil, file: fields.file)
            let types = try fields.optionalStringList("layer_types")
                ?? (0..<decoder.layerCount).map { $0 % 2 == 0 ? "sliding_attention" : "full_attention" }
            guard types.count == decoder.layerCount, types.allSatisfy({ $0 == "sliding_attention" || $0 == "full_attention" }) else {
                throw CheckpointError.badConfiguration(file: fields.file, field: "layer_types",
                                                       reason: "expected \(decoder.layerCount) of sliding_attention or full_attention, found \(types)")
            }
            self = .gptOss(decoder, moe, slidingWindow: try fields.has("sliding_window") ? fields.positiveInt("sliding_window") : 128,
                           slidingLayers: types.map { $0 == "sliding_attention" })
        default:
            throw CheckpointError.unknownArchitecture(file: fields.file, name: name, supported: Self.supportedArchitectures)
        }
    }

    private static let architectureByModelType = [
        "qwen3_moe": "Qwen3MoeForCausalLM", "mixtral": "MixtralForCausalLM",
        "qwen2_moe": "Qwen2MoeForCausalLM", "olmoe": "OlmoeForCausalLM", "deepseek_v2": "DeepseekV2ForCausalLM",
        "deepseek_v3": "DeepseekV3ForCausalLM", "kimi_k2": "DeepseekV3ForCausalLM", "gpt_oss": "GptOssForCausalLM",
    ]

    /// DeepSeek's MoE fields: `n_routed_experts` routed experts from layer `first_k_dense_replace`
    /// on, every `moe_layer_freq`; `n_shared_experts` shared ones of the routed width, ungated.
    private static func deepSeekMoE(_ fields: ConfigurationFields, scoring: RoutingParameters.Scoring, groups: ExpertGroups?,
                                    correctionBias: Bool) throws -> MoEConfiguration {
        let expertWidth = try fields.positiveInt("moe_intermediate_size")
        let shared = try fields.int("n_shared_experts", default: 0)
        return try MoEConfiguration(
            expertCount: fields.positiveInt("n_routed_experts"),
            topK: fields.positiveInt("num_experts_per_tok"),
            expertIntermediateSize: expertWidth,
            normalizesTopKProbabilities: fields.bool("norm_topk_prob", default: false),
            denseIntermediateSize: fields.positiveInt("intermediate_size"),
            sparseLayers: .from(fields.int("first_k_dense_replace", default: 0), every: fields.int("moe_layer_freq", default: 1)),
            sharedExpertIntermediateSize: shared > 0 ? shared * expertWidth : nil,
            sharedExpertIsGated: false, scoring: scoring, groups: groups,
            routedScalingFactor: fields.double("routed_scaling_factor", default: 1), hasCorrectionBias: correctionBias,
            file: fields.file)
    }

    private static func qwenMoE(_ fields: ConfigurationFields, sharedExpert: Bool) throws -> MoEConfiguration {
        let shared = sharedExpert ? try fields.optionalInt("shared_expert_intermediate_size") : nil
        return try MoEConfiguration(
            expertCount: fields.positiveInt("num_experts", "num_local_experts"),
            topK: fields.positiveInt("num_experts_per_tok"),
            expertIntermediateSize: fields.positiveInt("moe_intermediate_size"),
            normalizesTopKProbabilities: fields.bool("norm_topk_prob", default: !sharedExpert),
            denseIntermediateSize: fields.int("intermediate_size", default: 0),
            sparseLayers: .everyStep(fields.int("decoder_sparse_step", default: 1), except: fields.intList("mlp_only_layers", default: [])),
            sharedExpertIntermediateSize: shared.flatMap { $0 > 0 ? $0 : nil },
            file: fields.file)
    }
}
