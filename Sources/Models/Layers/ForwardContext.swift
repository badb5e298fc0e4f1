public import Compute

/// What every layer needs for one forward pass: the backend, where the step's tokens sit, the
/// KV cache of every layer and the rotary table.
public struct ForwardContext {
    public let backend: any Backend
    public let batch: AttentionBatch
    public let caches: [LayerKVCache]
    public let rotary: RotaryTable
    /// Set under expert parallelism: MoE layers send their tokens to the ranks of their experts.
    public let expertDispatch: (any ExpertDispatch)?

    public init(backend: any Backend, batch: AttentionBatch, caches: [LayerKVCache], rotary: RotaryTable,
                expertDispatch: (any ExpertDispatch)? = nil) {
        self.backend = backend
        self.batch = batch
        self.caches = caches
        self.rotary = rotary
        self.expertDispatch = expertDispatch
    }

    /// A tensor in the step's scratch arena, in the activation type.
    @inline(__always)
    func scratch(_ rows: Int, _ columns: Int) throws -> Tensor {
        try backend.makeTensor(Shape(rows, columns), backend.activationDType, in: .scratch)
    }
}

/// Runs a MoE layer's experts when they are spread over ranks (expert parallelism). Every rank
/// calls it for every MoE layer of every step, in the same order, even with no tokens.
public protocol ExpertDispatch: AnyObject {
    /// `routing` holds logical expert ids and router weights of `x`'s tokens; `experts` are this
    /// rank's slots. Writes each token's weighted sum of its experts' outputs into `out`.
    func runExperts(_ x: Tensor, routing: Routing, experts: ExpertWeights, layer: Int, context: ForwardContext,
                    into out: Tensor) throws
    /// Whether this rank alone holds every expert, slot i holding expert i (a group of one with
    /// no redundant copies): MoE layers then run as on a single rank, by the backend's own expert
    /// operator with no exchange and no host read, so steps may be recorded as graphs.
    var isLocal: Bool { get }
    /// Whether steps through this dispatch may be recorded as graphs and replayed: its MoE layers
    /// do no host work (they run locally, or a device exchange carries them).
    var allowsStepGraphs: Bool { get }
    /// Throws when an exchange of the step just run gave up waiting for a peer (its rows are
    /// garbage): checked before the step's tokens count, so that a step a lost peer broke runs again.
    func checkHealth() throws
    /// Bytes this rank has sent to others, and seconds spent exchanging, since it started (metrics).
    var exchangedBytes: Int { get }
    var exchangeSeconds: Double { get }
}
