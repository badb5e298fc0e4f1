public import Compute

extension CausalLM {
    /// Every weight except the routed experts, in a fixed order that every rank computes alike:
    /// what a new rank receives from a peer instead of reading the checkpoint. The rotary tables
    /// are computed, not loaded, so they are not listed.
    public var denseWeights: [Tensor] {
        var tensors = [embedding]
        func add(_ linear: Linear) {
            tensors.append(linear.weight)
            if let bias = linear.bias { tensors.append(bias) }
        }
        for layer in layers {
            tensors.append(layer.inputNorm.weight)
            switch layer.attention {
            case .multiHead(let attention):
                for linear in [attention.query, attention.key, attention.value, attention.output] { add(linear) }
                if let norms = attention.queryKeyNorm { tensors += [norms.query.weight, norms.key.weight] }
                if let sinks = attention.parameters.sinks { tensors.append(sinks) }
            case .latent(let attention):
                switch attention.query {
                case .direct(let query): add(query)
                case .lowRank(let down, let norm, let up):
                    add(down)
                    tensors.append(norm.weight)
                    add(up)
                }
                add(attention.latent)
                tensors += [attention.latentNorm.weight, attention.absorbedKey, attention.valueUp]
                add(attention.output)
            }
            tensors.append(layer.postAttentionNorm.weight)
            switch layer.feedForward {
            case .dense(let mlp):
                add(mlp.gateUp)
                add(mlp.down)
            case .sparse(let moe):
                add(moe.router)
                if let bias = moe.correctionBias { tensors.append(bias) }
                if let shared = moe.sharedExpert {
                    add(shared.mlp.gateUp)
                    add(shared.mlp.down)
                    if let gate = shared.gate { add(gate) }
                }
            }
        }
        tensors.append(finalNorm.weight)
        if head.weight.storage !== embedding.storage || head.weight.byteOffset != embedding.byteOffset { add(head) }
        return tensors
    }
}

/// The tensors of another source, with its names and shapes but zeros for values and no bytes
/// read: a rank that will receive its weights from peers builds its model from it.
public final class StructureOnlyWeights: WeightSource {
    private let source: any WeightSource
    private var buffers: [UnsafeMutableRawBufferPointer] = []

    public init(_ source: any WeightSource) {
        self.source = source
    }

    deinit {
        for buffer in buffers { buffer.deallocate() }
    }

    public func contains(_ name: String) -> Bool { source.contains(name) }

    public func tensor(_ name: String, shape: Shape) throws -> HostTensor {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: shape.elementCount * 4, alignment: 64)
        buffer.initializeMemory(as: UInt8.self, repeating: 0)
        buffers.append(buffer)
        return HostTensor(bytes: UnsafeRawBufferPointer(buffer), shape: shape, dtype: .float32, owner: self)
    }

    public func weight(_ name: String, shape: Shape, on backend: any Backend) throws -> Tensor {
        let tensor = try backend.makeTensor(shape, backend.activationDType, in: .weights)
        try backend.fill(tensor, value: 0)
        return tensor
    }

    public func write(_ name: String, shape: Shape, into target: Tensor, on backend: any Backend) throws {
        try backend.fill(target, value: 0)
    }
}
