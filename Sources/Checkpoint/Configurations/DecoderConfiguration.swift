/// The fields every decoder-only transformer here shares: sizes, attention shape, norms, rotary.
public struct DecoderConfiguration: Sendable, Equatable {
    public let vocabularySize: Int
    public let hiddenSize: Int
    public let layerCount: Int
    public let headCount: Int
    public let kvHeadCount: Int
    public let headDim: Int
    public let maxPositionCount: Int
    public let rmsNormEpsilon: Double
    public let rope: RopeParameters
    public let tiesWordEmbeddings: Bool
    public let hasAttentionBias: Bool

    public init(_ fields: ConfigurationFields, defaultRopeTheta: Double, defaultAttentionBias: Bool) throws {
        vocabularySize = try fields.positiveInt("vocab_size")
        hiddenSize = try fields.positiveInt("hidden_size")
        layerCount = try fields.positiveInt("num_hidden_layers")
        headCount = try fields.positiveInt("num_attention_heads")
        kvHeadCount = try fields.has("num_key_value_heads") ? fields.positiveInt("num_key_value_heads") : headCount
        guard headCount % kvHeadCount == 0 else {
            throw CheckpointError.badConfiguration(file: fields.file, field: "num_key_value_heads",
                                                   reason: "\(kvHeadCount) does not divide num_attention_heads \(headCount)")
        }
        if fields.has("head_dim") {
            headDim = try fields.positiveInt("head_dim")
        } else {
            guard hiddenSize % headCount == 0 else {
                throw CheckpointError.badConfiguration(file: fields.file, field: "head_dim",
                                                       reason: "missing, and hidden_size \(hiddenSize) is not a multiple of num_attention_heads \(headCount)")
            }
            headDim = hiddenSize / headCount
        }
        guard headDim % 2 == 0 else {
            throw CheckpointError.badConfiguration(file: fields.file, field: "head_dim", reason: "must be even for rotary embeddings, found \(headDim)")
        }
        maxPositionCount = try fields.positiveInt("max_position_embeddings")
        rmsNormEpsilon = try fields.double("rms_norm_eps", default: 1e-6)
        rope = try RopeParameters(fields, defaultTheta: defaultRopeTheta, maxPositions: maxPositionCount)
        tiesWordEmbeddings = try fields.bool("tie_word_embeddings", default: false)
        hasAttentionBias = try fields.bool("attention_bias", default: defaultAttentionBias)
    }
}
