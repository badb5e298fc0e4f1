public import Compute

/// Sparse MoE feed-forward: each token picks `topK` experts by its router scores, runs through
/// them, and sums their outputs weighted by those scores; optionally plus a shared expert that
/// every token passes through, scaled by a sigmoid gate (Qwen2-MoE) or not (DeepSeek).
public struct SparseMoE {
    public struct SharedExpert {
        public let mlp: GatedMLP
        public let gate: Linear?     // [1, hidden]

        public init(mlp: GatedMLP, gate: Linear?) {
            self.mlp = mlp
            self.gate = gate
        }
    }

    public let router: Linear                 // [experts, hidden]
    /// DeepSeek-V3's `e_score_correction_bias` `[experts]`, added to the scores for the choice only.
    public let correctionBias: Tensor?
    /// The experts this rank holds: all of them, or its slots under expert parallelism.
    public let experts: ExpertWeights
    /// Where the checkpoint holds the layer's experts (what a slot is restored from).
    public let expertNames: ExpertTensorNames
    public let routing: RoutingParameters
    public let sharedExpert: SharedExpert?

    public init(router: Linear, correctionBias: Tensor? = nil, experts: ExpertWeights, expertNames: ExpertTensorNames,
                routing: RoutingParameters, sharedExpert: SharedExpert?) {
        self.router = router
        self.correctionBias = correctionBias
        self.experts = experts
        self.expertNames = expertNames
        self.routing = routing
        self.sharedExpert = sharedExpert
    }

    /// - Parameter layer: the decoder layer's index, which names the layer's expert placement.
    public func forward(_ x: Tensor, layer: Int, _ context: ForwardContext, into out: Tensor) throws {
        let backend = context.backend
        let tokenCount = x.shape[0]
        let logits = try router.forward(x, context)                          // [t, experts]
        let picks = Routing(
            experts: try backend.makeTensor(Shape(tokenCount, routing.topK), .int32, in: .scratch),
            weights: try backend.makeTensor(Shape(tokenCount, routing.topK), .float32, in: .scratch))
        try backend.routeTopK(logits, bias: correctionBias, parameters: routing, into: picks)
        if let dispatch = context.expertDispatch, !dispatch.isLocal {
            try dispatch.runExperts(x, routing: picks, experts: experts, layer: layer, context: context, into: out)
        } else {
            try backend.expertMLP(x, experts: experts, routing: picks, into: out)
        }
        if let sharedExpert {
            let shared = try sharedExpert.mlp.forward(x, context)
            if let gate = try sharedExpert.gate?.forward(x, context) {   // [t, 1]
                try backend.addSigmoidGated(shared, gate: gate, into: out)
            } else {
                try backend.add(out, shared, into: out)
            }
        }
    }
}
