public import Compute

/// What every layer needs for one forward pass: the backend, where the step's tokens sit, the
/// KV cache of every layer and the rotary table.
public struct ForwardContext {
    public let backend: any Backend
    public let batch: AttentionBatch
    public let caches: [LayerKVCache]
    public let rotary: RotaryTable

    public init(backend: any Backend, batch: AttentionBatch, caches: [LayerKVCache], rotary: RotaryTable) {
        self.backend = backend
        self.batch = batch
        self.caches = caches
        self.rotary = rotary
    }

    /// A tensor in the step's scratch arena, in the activation type.
    @inline(__always)
    func scratch(_ rows: Int, _ columns: Int) throws -> Tensor {
        try backend.makeTensor(Shape(rows, columns), backend.activationDType, in: .scratch)
    }
}
