public import Compute
public import Checkpoint

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
        let embedded = try context.scratch(tokens, hiddenSize)
        try backend.embedding(tokenIDs, table: embedding, into: embedded)
        // Layers alternate between two (residual, output) pairs: a layer reads the other pair's output.
        let residuals = (try context.scratch(tokens, hiddenSize), try context.scratch(tokens, hiddenSize))
        let outputs = (try context.scratch(tokens, hiddenSize), try context.scratch(tokens, hiddenSize))
        var hidden = embedded
        for (index, layer) in layers.enumerated() {
            let out = index % 2 == 0 ? outputs.0 : outputs.1
            try layer.forward(hidden, context, residual: index % 2 == 0 ? residuals.0 : residuals.1, into: out)
            hidden = out
        }
        let selected = try context.scratch(logitRows.elementCount, hiddenSize)
        try backend.gatherRows(hidden, rows: logitRows, into: selected)
        let normed = try finalNorm.forward(selected, context)
        let logits = try backend.makeTensor(Shape(logitRows.elementCount, vocabularySize), .float32, in: .scratch)
        try backend.matmul(normed, weight: head.weight, bias: nil, into: logits)
        return logits
    }
}
