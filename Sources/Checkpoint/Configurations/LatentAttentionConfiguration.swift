/// DeepSeek's multi-head latent attention: queries from the hidden state directly or through a
/// low-rank bottleneck, keys and values from a compressed latent shared by every head, and a
/// rotary part of the key that every head shares too.
public struct LatentAttentionConfiguration: Sendable, Equatable {
    /// `q_lora_rank`: the width of the query's bottleneck, `nil` for a direct `q_proj`.
    public let queryRank: Int?
    /// `kv_lora_rank`: the width of the cached latent.
    public let latentWidth: Int
    public let nopeHeadDim: Int
    public let ropeHeadDim: Int
    public let valueHeadDim: Int
    /// Whether the checkpoint's rotary dimensions are interleaved pairs (DeepSeek's original
    /// layout, V2 always and V3's `rope_interleave`) rather than two halves.
    public let ropeIsInterleaved: Bool
    /// The softmax scale: `(nope + rope)^-½`, times DeepSeek's YaRN `mscale²` when `mscale_all_dim` is set.
    public let scale: Double

    public init(_ fields: ConfigurationFields, interleavedByDefault: Bool) throws {
        queryRank = try fields.optionalInt("q_lora_rank")
        if let queryRank, queryRank <= 0 {
            throw CheckpointError.badConfiguration(file: fields.file, field: "q_lora_rank", reason: "must be positive or null, found \(queryRank)")
        }
        latentWidth = try fields.positiveInt("kv_lora_rank")
        nopeHeadDim = try fields.positiveInt("qk_nope_head_dim")
        ropeHeadDim = try fields.positiveInt("qk_rope_head_dim")
        valueHeadDim = try fields.positiveInt("v_head_dim")
        guard ropeHeadDim % 2 == 0 else {
            throw CheckpointError.badConfiguration(file: fields.file, field: "qk_rope_head_dim", reason: "must be even, found \(ropeHeadDim)")
        }
        ropeIsInterleaved = try fields.bool("rope_interleave", default: interleavedByDefault)
        var scale = 1 / Double(nopeHeadDim + ropeHeadDim).squareRoot()
        if let rope = try fields.object("rope_parameters") ?? fields.object("rope_scaling"),
           let factor = try rope.optionalDouble("factor"), let allDimensions = try rope.optionalDouble("mscale_all_dim"), allDimensions != 0 {
            let magnitude = RopeParameters.yarnMagnitude(factor: factor, mscale: allDimensions)
            scale *= magnitude * magnitude
        }
        self.scale = scale
    }

    public var queryHeadDim: Int { nopeHeadDim + ropeHeadDim }
}
