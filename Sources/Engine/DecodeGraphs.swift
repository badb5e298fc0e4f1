import Compute
import Models

/// Decode steps replayed from recorded graphs (CUDA graphs), one per batch-size bucket: a step of
/// b sequences is padded to the next bucket, its inputs are copied into buffers that never move,
/// and the bucket's graph runs the whole forward pass and the sampling in one launch, so the host
/// no longer pays for ~15 launches per layer.
///
/// A bucket's first step runs eagerly (its result is the step's, and it sizes the scratch arena),
/// then the same work is recorded; later steps replay it. Graphs are re-recorded when the
/// scratch arena has moved since (a larger prefill grew it).
///
/// Padding rows decode token 0 at position 0 of the engine's padding block and are ignored.
///
/// Owned by the engine's thread, like the ``EngineCore`` that holds it.
final class DecodeGraphs {
    /// Up to 1,024 rows, vLLM's largest default batch; past 256 a step pads at most a fifth.
    static let buckets = [1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 160, 192, 224, 256, 320, 384, 448, 512, 640, 768, 896, 1024]

    /// The host side of one step's inputs, filled by the engine for its rows and padded here.
    struct HostInputs {
        var tokens: [Int32] = []
        var positions: [Int32] = []
        var slots: [Int32] = []
        var blockTables: [Int32] = []
        var temperatures: [Float] = []
        var keys: [Int32] = []
    }

    /// Blocks per table row: enough for a sequence of the model length, so tables never reshape.
    let tableWidth: Int
    private let paddingSlot: Int32
    private let paddingBlock: Int32
    private let tokens: Tensor
    private let positions: Tensor
    private let slots: Tensor
    private let requests: Tensor
    private let blockTables: Tensor
    private let temperatures: Tensor
    private let keys: Tensor
    private let sampled: Tensor
    private var graphs: [(graph: StepGraph, scratchGeneration: Int)?]
    var host = HostInputs()
    private(set) var sampledTokens: [Int32]
    /// Steps replayed from a graph and graphs recorded, for tests and logs.
    private(set) var replayCount = 0
    private(set) var recordCount = 0

    /// Rows of the largest graph for an engine of `maxSequences`: the bucket that holds them all.
    static func rowCount(maxSequences: Int) -> Int { buckets.first { $0 >= maxSequences } ?? buckets.last! }

    init(backend: any Backend, maxSequences: Int, tableWidth: Int, paddingBlock: Int32, blockSize: Int) throws {
        let rows = Self.rowCount(maxSequences: maxSequences)
        self.tableWidth = tableWidth
        self.paddingBlock = paddingBlock
        paddingSlot = paddingBlock * Int32(blockSize)
        func make(_ shape: Shape, _ dtype: DType) throws -> Tensor { try backend.makeTensor(shape, dtype, in: .weights) }
        tokens = try make(Shape(rows), .int32)
        positions = try make(Shape(rows), .int32)
        slots = try make(Shape(rows), .int32)
        requests = try make(Shape(rows), .int32)
        blockTables = try make(Shape(rows, tableWidth), .int32)
        temperatures = try make(Shape(rows), .float32)
        keys = try make(Shape(rows, 2), .int32)
        sampled = try make(Shape(rows), .int32)
        graphs = Array(repeating: nil, count: Self.buckets.count)
        sampledTokens = [Int32](repeating: 0, count: rows)
        host.tokens.reserveCapacity(rows)
        host.blockTables.reserveCapacity(rows * tableWidth)
        // Row i of the batch is request i, and its logits are row i: one tensor serves as both.
        try backend.upload((0..<Int32(rows)).map { $0 }, into: requests)
    }

    /// The bucket a step of `count` decodes runs in, or nil when it is too large for graphs.
    func bucketIndex(for count: Int) -> Int? {
        guard count <= sampled.elementCount else { return nil }
        return Self.buckets.firstIndex { $0 >= count }
    }

    /// Starts a step's inputs: the engine then appends one row per sequence.
    func resetInputs() {
        host.tokens.removeAll(keepingCapacity: true)
        host.positions.removeAll(keepingCapacity: true)
        host.slots.removeAll(keepingCapacity: true)
        host.blockTables.removeAll(keepingCapacity: true)
        host.temperatures.removeAll(keepingCapacity: true)
        host.keys.removeAll(keepingCapacity: true)
    }

    /// Whether bucket `index` has a graph recorded over the scratch arena as it is now (a run replays it).
    func hasGraph(bucket index: Int, backend: any Backend) -> Bool {
        graphs[index].map { $0.scratchGeneration == backend.scratchGeneration } ?? false
    }

    /// Runs the step of `host`'s rows in bucket `index`; the tokens land in ``sampledTokens``.
    func run(bucket index: Int, model: CausalLM, caches: [LayerKVCache], backend: any Backend,
             expertDispatch: (any ExpertDispatch)?) throws {
        let rows = Self.buckets[index]
        try uploadInputs(rows: rows, backend: backend)
        if hasGraph(bucket: index, backend: backend), let recorded = graphs[index] {
            try backend.replay(recorded.graph)
            replayCount += 1
        } else {
            backend.beginStep()
            try forward(rows: rows, model: model, caches: caches, backend: backend, expertDispatch: expertDispatch)
            backend.beginStep()
            try backend.beginStepGraph()
            do {
                try forward(rows: rows, model: model, caches: caches, backend: backend, expertDispatch: expertDispatch)
            } catch {
                _ = try? backend.endStepGraph()
                throw error
            }
            graphs[index] = (try backend.endStepGraph(), backend.scratchGeneration)
            recordCount += 1
        }
        try backend.synchronize()
        try sampledTokens.withUnsafeMutableBufferPointer {
            try backend.download(sampled.rows(0..<rows), into: UnsafeMutableBufferPointer(rebasing: $0[0..<rows]))
        }
    }

    /// Runs the largest bucket's step once on padding rows, eagerly, recording nothing: how a rank
    /// measures the scratch its largest decode takes before its KV cache exists.
    func runLargestEagerly(model: CausalLM, caches: [LayerKVCache], backend: any Backend) throws {
        let rows = sampled.elementCount
        resetInputs()
        try uploadInputs(rows: rows, backend: backend)
        backend.beginStep()
        try forward(rows: rows, model: model, caches: caches, backend: backend, expertDispatch: nil)
        try backend.synchronize()
    }

    /// Pads `host` to `rows` with padding rows and copies it into the buffers the graphs read.
    private func uploadInputs(rows: Int, backend: any Backend) throws {
        while host.tokens.count < rows {
            host.tokens.append(0)
            host.positions.append(0)
            host.slots.append(paddingSlot)
            host.blockTables.append(paddingBlock)
            host.blockTables.append(contentsOf: repeatElement(0, count: tableWidth - 1))
            host.temperatures.append(0)
            host.keys.append(0)
            host.keys.append(0)
        }
        try backend.upload(host.tokens, into: tokens.rows(0..<rows))
        try backend.upload(host.positions, into: positions.rows(0..<rows))
        try backend.upload(host.slots, into: slots.rows(0..<rows))
        try backend.upload(host.blockTables, into: blockTables.rows(0..<rows))
        try backend.upload(host.keys, into: keys.rows(0..<rows))
        try backend.upload(host.temperatures, into: temperatures.rows(0..<rows))
    }

    /// Forgets every recorded graph: each bucket's next step records anew.
    func discardRecorded() {
        for index in graphs.indices { graphs[index] = nil }
    }

    private func forward(rows: Int, model: CausalLM, caches: [LayerKVCache], backend: any Backend,
                         expertDispatch: (any ExpertDispatch)?) throws {
        let batch = AttentionBatch(tokenCount: rows, positions: positions.rows(0..<rows), slotMapping: slots.rows(0..<rows),
                                   tokenRequests: requests.rows(0..<rows), blockTables: blockTables.rows(0..<rows),
                                   leadingDecodeRows: rows)
        let context = ForwardContext(backend: backend, batch: batch, caches: caches, rotary: model.rotary, expertDispatch: expertDispatch)
        let logits = try model.forward(tokenIDs: tokens.rows(0..<rows), logitRows: requests.rows(0..<rows), context: context)
        try backend.sampleTokens(logits, temperatures: temperatures.rows(0..<rows), keys: keys.rows(0..<rows),
                                 into: sampled.rows(0..<rows))
    }
}
