public import Checkpoint
public import Compute

/// Where a model's named tensors come from: a checkpoint, or seeded random values.
public protocol WeightSource {
    func contains(_ name: String) -> Bool
    /// The tensor `name`, which must have `shape`.
    func tensor(_ name: String, shape: Shape) throws -> HostTensor
    /// The tensor `name` as a weight on `backend` (by default made from ``tensor(_:shape:)``).
    func weight(_ name: String, shape: Shape, on backend: any Backend) throws -> Tensor
    /// Writes the tensor `name` into `target` on `backend` (by default an upload of ``tensor(_:shape:)``).
    func write(_ name: String, shape: Shape, into target: Tensor, on backend: any Backend) throws
    /// Whether values are seeded from names rather than read (`--load-format dummy`): a loader may
    /// then name each part it needs on its own (an expert's slot) and have it filled on the device,
    /// where a checkpoint's tensor would have to be rearranged on the host.
    var isSeeded: Bool { get }
}

extension WeightSource {
    public func weight(_ name: String, shape: Shape, on backend: any Backend) throws -> Tensor {
        try backend.makeWeight(tensor(name, shape: shape))
    }

    public func write(_ name: String, shape: Shape, into target: Tensor, on backend: any Backend) throws {
        try backend.upload(tensor(name, shape: shape), into: target)
    }

    public var isSeeded: Bool { false }
}

extension WeightFiles: WeightSource {}

/// `--load-format dummy`: every tensor the model asks for exists, filled with values that are a
/// pure function of the seed, the tensor's name and the element's index (``SeededValues``), so two
/// processes (two ranks) build identical weights, and a GPU fills its own memory without the host
/// making 60 GB of numbers for a 30B model.
///
/// Norm weights are one; biases (DeepSeek-V3's routing correction among them) and GPT-OSS's
/// attention sinks zero, as transformers initialises most of them (a bias drawn like a weight of
/// fan-in one, ±1.7, outweighs a router's logits, so every token would pick the same experts and a
/// benchmark would read a few of them); and the rest uniform in ±1.7 / √fan-in, which keeps activations in a
/// sane range through many layers, unlike vLLM's ±1e-3 for every tensor.
public final class DummyWeights: WeightSource {
    public let seed: UInt64
    private var buffers: [UnsafeMutableRawBufferPointer] = []

    public init(seed: UInt64) {
        self.seed = seed
    }

    deinit {
        for buffer in buffers { buffer.deallocate() }
    }

    public func contains(_ name: String) -> Bool { !name.contains("gate_up_proj") && !name.hasSuffix(".bias") }

    public var isSeeded: Bool { true }

    public func tensor(_ name: String, shape: Shape) throws -> HostTensor {
        let count = shape.elementCount
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: count * 4, alignment: 64)
        buffers.append(buffer)
        let values = buffer.bindMemory(to: Float.self)
        if name.contains("norm") {
            values.initialize(repeating: 1)
        } else if Self.isZero(name) {
            values.initialize(repeating: 0)
        } else {
            let key = seed ^ Self.hash(name), bound = Self.bound(shape)
            for index in 0..<count { values[index] = SeededValues.uniform(key, index, bound: bound) }
        }
        return HostTensor(bytes: UnsafeRawBufferPointer(buffer), shape: shape, dtype: .float32, owner: self)
    }

    public func weight(_ name: String, shape: Shape, on backend: any Backend) throws -> Tensor {
        let tensor = try backend.makeTensor(shape, backend.activationDType, in: .weights)
        try write(name, shape: shape, into: tensor, on: backend)
        return tensor
    }

    public func write(_ name: String, shape: Shape, into target: Tensor, on backend: any Backend) throws {
        if name.contains("norm") {
            try backend.fill(target, value: 1)
        } else if Self.isZero(name) {
            try backend.fill(target, value: 0)
        } else {
            try backend.fillUniform(target, seed: seed ^ Self.hash(name), bound: Self.bound(shape))
        }
    }

    private static func isZero(_ name: String) -> Bool { name.hasSuffix("bias") || name.hasSuffix(".sinks") }

    private static func bound(_ shape: Shape) -> Float { 1.7 / Float(shape.rowWidth).squareRoot() }

    private static func hash(_ name: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in name.utf8 {
            hash ^= UInt64(byte)
            hash &*= 0x100_0000_01b3
        }
        return hash
    }
}
