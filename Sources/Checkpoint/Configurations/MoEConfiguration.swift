public import Compute

/// The sparse feed-forward fields: how many experts, how many each token picks and how, their
/// size, and which layers are sparse.
public struct MoEConfiguration: Sendable, Equatable {
    /// Which decoder layers are sparse; the others have a dense MLP.
    public enum SparseLayers: Sendable, Equatable {
        /// Qwen's rule: every `step`-th layer counting from one, except those listed (`mlp_only_layers`).
        case everyStep(Int, except: [Int])
        /// DeepSeek's rule: from layer `first` on (`first_k_dense_replace`), every `frequency`-th
        /// counting from zero (`moe_layer_freq`).
        case from(Int, every: Int)
    }

    public let expertCount: Int
    public let topK: Int
    public let expertIntermediateSize: Int
    /// Whether the picked router probabilities are renormalised to sum to one.
    public let normalizesTopKProbabilities: Bool
    /// Width of the dense MLP in layers that are not sparse.
    public let denseIntermediateSize: Int
    public let sparseLayers: SparseLayers
    /// Width of the shared expert that every token also passes through (Qwen2-MoE, DeepSeek), if any.
    public let sharedExpertIntermediateSize: Int?
    /// Whether the shared expert's output is scaled by a sigmoid gate (Qwen2-MoE) or added as it is (DeepSeek).
    public let sharedExpertIsGated: Bool
    public let scoring: RoutingParameters.Scoring
    public let groups: ExpertGroups?
    /// DeepSeek's `routed_scaling_factor`, applied to the routed experts' weights.
    public let routedScalingFactor: Double
    /// Whether the router has DeepSeek-V3's `e_score_correction_bias`.
    public let hasCorrectionBias: Bool

    public init(expertCount: Int, topK: Int, expertIntermediateSize: Int, normalizesTopKProbabilities: Bool,
                denseIntermediateSize: Int, sparseLayers: SparseLayers, sharedExpertIntermediateSize: Int?,
                sharedExpertIsGated: Bool = true, scoring: RoutingParameters.Scoring = .softmax, groups: ExpertGroups? = nil,
                routedScalingFactor: Double = 1, hasCorrectionBias: Bool = false, file: String) throws {
        guard topK <= expertCount else {
            throw CheckpointError.badConfiguration(file: file, field: "num_experts_per_tok",
                                                   reason: "\(topK) exceeds the \(expertCount) experts")
        }
        switch sparseLayers {
        case .everyStep(let step, _):
            guard step >= 1 else {
                throw CheckpointError.badConfiguration(file: file, field: "decoder_sparse_step", reason: "must be at least 1")
            }
        case .from(let first, let frequency):
            guard first >= 0, frequency >= 1 else {
                throw CheckpointError.badConfiguration(file: file, field: "moe_layer_freq",
                                                       reason: "first_k_dense_replace must be ≥ 0 and moe_layer_freq ≥ 1")
            }
        }
        if let groups {
            guard groups.count >= 1, expertCount % groups.count == 0 else {
                throw CheckpointError.badConfiguration(file: file, field: "n_group",
                                                       reason: "\(expertCount) experts do not split into \(groups.count) groups")
            }
            guard (1...groups.count).contains(groups.selected), groups.selected * (expertCount / groups.count) >= topK else {
                throw CheckpointError.badConfiguration(file: file, field: "topk_group",
                                                       reason: "\(groups.selected) of \(groups.count) groups hold fewer than the top-\(topK) experts")
            }
            guard groups.score != .topTwoSum || expertCount / groups.count >= 2 else {
                throw CheckpointError.badConfiguration(file: file, field: "n_group", reason: "groups of one expert have no two best")
            }
        }
        self.expertCount = expertCount
        self.topK = topK
        self.expertIntermediateSize = expertIntermediateSize
        self.normalizesTopKProbabilities = normalizesTopKProbabilities
        self.denseIntermediateSize = denseIntermediateSize
        self.sparseLayers = sparseLayers
        self.sharedExpertIntermediateSize = sharedExpertIntermediateSize
        self.sharedExpertIsGated = sharedExpertIsGated
        self.scoring = scoring
        self.groups = groups
        self.routedScalingFactor = routedScalingFactor
        self.hasCorrectionBias = hasCorrectionBias
    }

    public func isSparse(layerIndex: Int) -> Bool {
        guard expertCount > 0 else { return false }
        switch sparseLayers {
        case .everyStep(let step, let except): return !except.contains(layerIndex) && (layerIndex + 1) % step == 0
        case .from(let first, let frequency): return layerIndex >= first && layerIndex % frequency == 0
        }
    }

    /// How the router's logits become picks.
    public var routing: RoutingParameters {
        RoutingParameters(topK: topK, isRenormalized: normalizesTopKProbabilities, scoring: scoring, groups: groups,
                          scalingFactor: Float(routedScalingFactor))
    }
}
