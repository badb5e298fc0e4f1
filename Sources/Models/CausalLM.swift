public import Checkpoint
public import Compute

/// A decoder-only MoE language model: embedding, decoder layers, final norm, LM head.
///
/// Built once per rank by an architecture's `load`; immutable afterwards.
public final class CausalLM {
    public let configuration: ModelConfiguration
    public let embedding: Tensor           // [vocabulary, hidden]
    public let layers: [DecoderLayer]
    public let finalNorm: RMSNorm
    public let head: Linear                 // [vocabulary, hidden]; the embedding when tied
    public let rotary: RotaryTable

    public init(configuration: ModelConfiguration, embedding: Tensor, layers: [DecoderLayer], finalNorm: RMSNorm,
                head: Linear, rotary: RotaryTable) {
        self.configuration = configuration
        self.embedding = embedding
        self.layers = layers
        self.finalNorm = finalNorm
        self.head = head
        self.rotary = rotary
    }

    public var vocabularySize: Int { embedding.shape[0] }
    public var hiddenSize: Int { embedding.shape[1] }

    /// Runs the step's tokens through the model and returns the logits `[rows, vocabulary]` of
    /// the tokens listed in `logitRows` (each request's last scheduled token).
    ///
    /// - Parameters:
    ///   - tokenIDs: `[t]` int32 on the backend.
    ///   - logitRows: `[rows]` int32 indices into the step's tokens.
    public func forward(tokenIDs: Tensor, logitRows: Tensor, context: ForwardContext) throws -> Tensor {
        let backend = context.backend
        let tokens = tokenIDs.elementCount
        let stream = try context.scratch(tokens, hiddenSize)
        try backend.embedding(tokenIDs, table: embedding, into: stream)
        // Each layer updates the residual stream in place and leaves its feed-forward output in
        // `delta`, which the next layer's first norm adds (one launch for the add and the norm).
        let delta = try context.scratch(tokens, hiddenSize)
        var pending: Tensor?
        for layer in layers {
            try layer.forward(stream: stream, pending: pending, context, into: delta)
            pending = delta
        }
        let selected = try context.scratch(logitRows.elementCount, hiddenSize)
        try backend.gatherRows(stream, rows: logitRows, into: selected)
        let normed: Tensor
        if let pending {
            let selectedDelta = try context.scratch(logitRows.elementCount, hiddenSize)
            try backend.gatherRows(pending, rows: logitRows, into: selectedDelta)
            normed = try finalNorm.forward(selected, adding: selectedDelta, sum: selected, context)
        } else {
            normed = try finalNorm.forward(selected, context)
        }
        let logits = try backend.makeTensor(Shape(logitRows.elementCount, vocabularySize), .float32, in: .scratch)
        try backend.matmul(normed, weight: head.weight, bias: nil, into: logits)
        return logits
    }
}
