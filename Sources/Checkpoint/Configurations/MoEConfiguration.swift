/// The sparse feed-forward fields: how many experts, how many each token picks, their size, and
/// which layers are sparse.
public struct MoEConfiguration: Sendable, Equatable {
    public let expertCount: Int
    public let topK: Int
    public let expertIntermediateSize: Int
    /// Whether the picked router probabilities are renormalised to sum to one.
    public let normalizesTopKProbabilities: Bool
    /// Width of the dense MLP in layers that are not sparse.
    public let denseIntermediateSize: Int
    public let decoderSparseStep: Int
    public let mlpOnlyLayers: [Int]
    /// Width of the shared expert that every token also passes through (Qwen2-MoE), if any.
    public let sharedExpertIntermediateSize: Int?

    public init(expertCount: Int, topK: Int, expertIntermediateSize: Int, normalizesTopKProbabilities: Bool,
                denseIntermediateSize: Int, decoderSparseStep: Int, mlpOnlyLayers: [Int], sharedExpertIntermediateSize: Int?,
                file: String) throws {
        guard topK <= expertCount else {
            throw CheckpointError.badConfiguration(file: file, field: "num_experts_per_tok",
                                                   reason: "\(topK) exceeds the \(expertCount) experts")
        }
        guard decoderSparseStep >= 1 else {
            throw CheckpointError.badConfiguration(file: file, field: "decoder_sparse_step", reason: "must be at least 1")
        }
        self.expertCount = expertCount
        self.topK = topK
        self.expertIntermediateSize = expertIntermediateSize
        self.normalizesTopKProbabilities = normalizesTopKProbabilities
        self.denseIntermediateSize = denseIntermediateSize
        self.decoderSparseStep = decoderSparseStep
        self.mlpOnlyLayers = mlpOnlyLayers
        self.sharedExpertIntermediateSize = sharedExpertIntermediateSize
    }

    /// Qwen's rule: a layer is sparse unless listed in `mlp_only_layers`, every `decoder_sparse_step` layers.
    public func isSparse(layerIndex: Int) -> Bool {
        !mlpOnlyLayers.contains(layerIndex) && expertCount > 0 && (layerIndex + 1) % decoderSparseStep == 0
    }
}
