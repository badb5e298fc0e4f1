/// A device that stores tensors and runs Flexpert's operators on them.
///
/// The operator set is closed: `Models` is written once against it. `CPUBackend` is the
/// reference; every other backend is compared with it operator by operator. Operators only
/// enqueue work; ``synchronize()`` is the one place that waits.
///
/// Shapes in the comments are `[rows, columns]` of row-major tensors; `t` is the step's token
/// count. Activations are in ``activationDType``, int32 tensors hold ids, positions and picks.
///
/// - Important: A backend belongs to one rank's step loop and is never shared across threads;
///   another thread that must reach the device gets a ``TransferStream`` from it.
public protocol Backend: TensorTransfers {
    var device: DeviceDescription { get }
    /// The element type of activations and of the KV cache on this backend.
    var activationDType: DType { get }

    func makeTensor(_ shape: Shape, _ dtype: DType, in arena: Arena) throws -> Tensor
    /// Copies `tensor` out as float32 (floating tensors) or int32.
    func download(_ tensor: Tensor, into floats: UnsafeMutableBufferPointer<Float>) throws
    func download(_ tensor: Tensor, into integers: UnsafeMutableBufferPointer<Int32>) throws
    /// A weight made from checkpoint bytes; may alias `source` when no conversion is needed.
    func makeWeight(_ source: HostTensor) throws -> Tensor
    /// Makes the backend usable from the calling thread (a GPU context is per thread); the step
    /// loop calls it once on its own thread before its first step.
    func attachCurrentThread() throws
    /// A queue of copies of its own for one other thread (a reconfiguration's preparation).
    func makeTransferStream() throws -> any TransferStream
    /// Memory the device can still hand out, in bytes (what sizes the KV cache by default).
    func availableMemoryBytes() throws -> Int
    /// The device's whole memory, in bytes; nil where it is the host's, shared with every process.
    func totalMemoryBytes() throws -> Int?
    /// Starts a step: the scratch arena is reset.
    func beginStep()
    /// The scratch arena's top. ``releaseScratch(to:)`` hands back every scratch tensor made after
    /// it, so each layer's intermediates reuse one region instead of a step holding all of them
    /// (work is ordered on one stream, so later kernels write the memory only after earlier ones
    /// have read it).
    func scratchMark() -> Int
    func releaseScratch(to mark: Int)
    /// Changes whenever the scratch arena's memory moves; step graphs recorded before are stale.
    var scratchGeneration: Int { get }

    /// Whether this backend can record a step's work once and replay it (CUDA graphs), which
    /// removes the host's per-launch cost from decode steps.
    var supportsStepGraphs: Bool { get }
    /// Between these two calls operators are recorded, not run. Everything a recorded operator
    /// reads or writes must stay where it is for as long as the graph is replayed.
    func beginStepGraph() throws
    func endStepGraph() throws -> StepGraph
    func replay(_ graph: StepGraph) throws
    /// Element i becomes `SeededValues.uniform(seed, i, bound)` in the tensor's type (dummy weights).
    func fillUniform(_ tensor: Tensor, seed: UInt64, bound: Float) throws
    func fill(_ tensor: Tensor, value: Float) throws

    func embedding(_ ids: Tensor, table: Tensor, into out: Tensor) throws           // [t] of [vocab, h] → [t, h]
    func matmul(_ x: Tensor, weight: Tensor, bias: Tensor?, into out: Tensor) throws // [t, k]·[n, k]ᵀ (+ [n]) → [t, n]
    /// Three projections of the same rows (attention's query, key and value): the same as three
    /// `matmul`s (the default), in one launch where a backend can (a decode step of a few
    /// tokens pays per launch).
    func matmuls(_ x: Tensor, _ first: Projection, _ second: Projection, _ third: Projection) throws
    func rmsNorm(_ x: Tensor, weight: Tensor, epsilon: Float, into out: Tensor) throws // each row of x
    /// `sum = a + b` (`sum` may be `a`), then `normed = rmsNorm(sum)`: a residual add and the norm
    /// after it, which read the same rows. The same as `add` then `rmsNorm` (the default), in one
    /// pass where a backend fuses them (two launches per norm cost a decode step at small batches).
    func addRMSNorm(_ a: Tensor, _ b: Tensor, weight: Tensor, epsilon: Float, sum: Tensor, normed: Tensor) throws
    func rotary(_ x: Tensor, positions: Tensor, table: RotaryTable, headDim: Int) throws // in place, [t, heads·headDim]
    func clamp(_ x: Tensor, limit: Float) throws                                     // in place, to [−limit, limit]
    func storeKV(keys: Tensor, values: Tensor, cache: LayerKVCache, batch: AttentionBatch) throws
    /// What attention does before it reads the cache: each head of `queries` and `keys`
    /// RMS-normalised by `norms` when given, then both rotated (in place); then keys and values
    /// stored. The same as `rmsNorm`, `rotary` and `storeKV` in turn (the default,
    /// ``prepareAttentionInTurn``), in one pass where a backend fuses them (a decode step at small
    /// batches pays per launch).
    func prepareAttention(queries: Tensor, keys: Tensor, values: Tensor, norms: QueryKeyNorms?, table: RotaryTable, headDim: Int,
                          cache: LayerKVCache, batch: AttentionBatch) throws
    func attention(_ queries: Tensor, cache: LayerKVCache, batch: AttentionBatch,
                   parameters: AttentionParameters, into out: Tensor) throws         // [t, heads·headDim]
    /// One matmul per head: `out`'s head h (`outputColumns`) = `x`'s head h (`inputColumns`) ·
    /// `weight[h]ᵀ`, with `weight` `[heads, n, k]`. What latent attention's up-projections are,
    /// absorbed into its queries and its output.
    func headMatmul(_ x: Tensor, columns inputColumns: HeadColumns, weight: Tensor, into out: Tensor,
                    columns outputColumns: HeadColumns) throws
    /// What latent attention does before it reads the cache: each token's cache row becomes its
    /// normalised latent (`latent`'s first `latentWidth` columns, RMS-normalised by `norm`) and its
    /// rotated rotary key (the last `ropeWidth`); each head's rotary query (in `queries`
    /// `[t, heads·(nope + rope)]`, after its no-rope part) is rotated into `latentQueries`
    /// `[t, heads·(latent + rope)]`, after the head's latent part (which ``headMatmul`` writes).
    func prepareLatentAttention(queries: Tensor, latent: Tensor, norm: Tensor, epsilon: Float, table: RotaryTable,
                                parameters: LatentAttentionParameters, cache: LayerKVCache, batch: AttentionBatch,
                                into latentQueries: Tensor) throws
    /// Multi-query attention in the latent space: every head's query `[latent + rope]` against each
    /// cached row as its key, and the row's latent part as its value. `out` `[t, heads·latent]`.
    func latentAttention(_ latentQueries: Tensor, cache: LayerKVCache, batch: AttentionBatch,
                         parameters: LatentAttentionParameters, into out: Tensor) throws
    /// `bias` `[experts]`, when given, is added to the scores for the choice only.
    func routeTopK(_ logits: Tensor, bias: Tensor?, parameters: RoutingParameters, into routing: Routing) throws
    func expertMLP(_ x: Tensor, experts: ExpertWeights, routing: Routing, into out: Tensor) throws
    /// out[t] = Σ_k weights[t, k] · rows[t·k + k], summed in pick order (what `expertMLP` ends with;
    /// expert parallelism computes the rows on other ranks and combines them here).
    func combineExperts(_ rows: Tensor, weights: Tensor, into out: Tensor) throws  // [t·k, h], [t, k] → [t, h]
    func siluMul(_ gateUp: Tensor, into out: Tensor) throws                         // [t, 2i] → [t, i]
    func add(_ a: Tensor, _ b: Tensor, into out: Tensor) throws
    func addSigmoidGated(_ y: Tensor, gate: Tensor, into out: Tensor) throws       // out += σ(gate[t]) · y[t]
    func gatherRows(_ x: Tensor, rows: Tensor, into out: Tensor) throws             // out[i] = x[rows[i]]
    /// tokens[r] = `SeededValues.sample(logits[r], temperatures[r], keys[r])`: float32 logits
    /// `[rows, vocabulary]`, float32 temperatures `[rows]`, keys `[rows, 2]` int32 (the low word
    /// of each 64-bit key first), int32 tokens `[rows]`. Sampling where the logits are means a
    /// step downloads a token per row instead of a vocabulary of floats.
    func sampleTokens(_ logits: Tensor, temperatures: Tensor, keys: Tensor, into tokens: Tensor) throws
}

extension Backend {
    /// A scratch tensor of `shape` holding `values`.
    public func makeScratch<Element: HostElement>(_ values: ArraySlice<Element>, _ shape: Shape) throws -> Tensor {
        let tensor = try makeTensor(shape, Element.dtype, in: .scratch)
        try upload(values, into: tensor)
        return tensor
    }

    public func makeScratch<Element: HostElement>(_ values: [Element], _ shape: Shape) throws -> Tensor {
        try makeScratch(values[...], shape)
    }

    public func matmuls(_ x: Tensor, _ first: Projection, _ second: Projection, _ third: Projection) throws {
        try matmul(x, weight: first.weight, bias: first.bias, into: first.out)
        try matmul(x, weight: second.weight, bias: second.bias, into: second.out)
        try matmul(x, weight: third.weight, bias: third.bias, into: third.out)
    }

    public func addRMSNorm(_ a: Tensor, _ b: Tensor, weight: Tensor, epsilon: Float, sum: Tensor, normed: Tensor) throws {
        try add(a, b, into: sum)
        try rmsNorm(sum, weight: weight, epsilon: epsilon, into: normed)
    }

    public func prepareAttention(queries: Tensor, keys: Tensor, values: Tensor, norms: QueryKeyNorms?, table: RotaryTable,
                                 headDim: Int, cache: LayerKVCache, batch: AttentionBatch) throws {
        try prepareAttentionInTurn(queries: queries, keys: keys, values: values, norms: norms, table: table, headDim: headDim,
                                   cache: cache, batch: batch)
    }

    /// ``prepareAttention`` as its operators in turn (each norm in place: rows are read before
    /// they are written).
    public func prepareAttentionInTurn(queries: Tensor, keys: Tensor, values: Tensor, norms: QueryKeyNorms?, table: RotaryTable,
                                       headDim: Int, cache: LayerKVCache, batch: AttentionBatch) throws {
        if let norms {
            try rmsNorm(queries, weight: norms.query, epsilon: norms.epsilon, into: queries)
            try rmsNorm(keys, weight: norms.key, epsilon: norms.epsilon, into: keys)
        }
        try rotary(queries, positions: batch.positions, table: table, headDim: headDim)
        try rotary(keys, positions: batch.positions, table: table, headDim: headDim)
        try storeKV(keys: keys, values: values, cache: cache, batch: batch)
    }
}

/// What a backend runs on, for logs and errors.
public struct DeviceDescription: Sendable, CustomStringConvertible {
    public let name: String
    public let threadCount: Int

    public init(name: String, threadCount: Int) {
        self.name = name
        self.threadCount = threadCount
    }

    public var description: String { "\(name) (\(threadCount) threads)" }
}

public enum ComputeError: Error, CustomStringConvertible {
    case shapeMismatch(operation: String, detail: String)
    case unsupportedDType(operation: String, DType)
    case positionOutOfRange(position: Int, limit: Int)
    case unsupported(String)
    /// A weight or cache tensor larger than the memory left (or than any machine has).
    case outOfMemory(operation: String, requestedBytes: Int?, availableBytes: Int)

    public var description: String {
        switch self {
        case .shapeMismatch(let operation, let detail): "\(operation): shape mismatch: \(detail)"
        case .unsupportedDType(let operation, let dtype): "\(operation): unsupported dtype \(dtype)"
        case .positionOutOfRange(let position, let limit):
            "position \(position) is beyond the rotary table's \(limit) positions"
        case .unsupported(let what): "\(what) is not supported on this backend"
        case .outOfMemory(let operation, let requested, let available):
            "\(operation): out of memory: \(requested.map { "\($0 >> 20) MiB" } ?? "more than 2⁶³ bytes") requested, "
                + "\(available >> 20) MiB available"
        }
    }
}
