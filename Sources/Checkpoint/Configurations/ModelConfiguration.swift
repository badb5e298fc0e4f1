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

    public static let supportedArchitectures = [
        "Qwen3MoeForCausalLM", "MixtralForCausalLM", "Qwen2MoeForCausalLM", "OlmoeForCausalLM",
    ]

    public var decoder: DecoderConfiguration {
        switch self {
        case .qwen3MoE(let decoder, _), .mixtral(let decoder, _, _), .qwen2MoE(let decoder, _), .olmoE(let decoder, _, _):
            decoder
        }
    }

    public var moe: MoEConfiguration {
        switch self {
        case .qwen3MoE(_, let moe), .mixtral(_, let moe, _), .qwen2MoE(_, let moe), .olmoE(_, let moe, _): moe
        }
    }

    public var architectureName: String {
        switch self {
        case .qwen3MoE: "Qwen3MoeForCausalLM"
        case .mixtral: "MixtralForCausalLM"
        case .qwen2MoE: "Qwen2MoeForCausalLM"
        case .olmoE: "OlmoeForCausalLM"
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
                denseIntermediateSize: intermediate, decoderSparseStep: 1, mlpOnlyLayers: [],
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
                denseIntermediateSize: intermediate, decoderSparseStep: 1, mlpOnlyLayers: [],
                sharedExpertIntermediateSize: nil, file: fields.file)
            self = .olmoE(decoder, moe, clipQKV: try fields.optionalDouble("clip_qkv"))
        default:
            throw CheckpointError.unknownArchitecture(file: fields.file, name: name, supported: Self.supportedArchitectures)
        }
    }

    private static let architectureByModelType = [
        "qwen3_moe": "Qwen3MoeForCausalLM", "mixtral": "MixtralForCausalLM",
        "qwen2_moe": "Qwen2MoeForCausalLM", "olmoe": "OlmoeForCausalLM",
    ]

    private static func qwenMoE(_ fields: ConfigurationFields, sharedExpert: Bool) throws -> MoEConfiguration {
        let shared = sharedExpert ? try fields.optionalInt("shared_expert_intermediate_size") : nil
        return try MoEConfiguration(
            expertCount: fields.positiveInt("num_experts", "num_local_experts"),
            topK: fields.positiveInt("num_experts_per_tok"),
            expertIntermediateSize: fields.positiveInt("moe_intermediate_size"),
            normalizesTopKProbabilities: fields.bool("norm_topk_prob", default: !sharedExpert),
            denseIntermediateSize: fields.int("intermediate_size", default: 0),
            decoderSparseStep: fields.int("decoder_sparse_step", default: 1),
            mlpOnlyLayers: fields.intList("mlp_only_layers", default: []),
            sharedExpertIntermediateSize: shared.flatMap { $0 > 0 ? $0 : nil },
            file: fields.file)
    }
}
