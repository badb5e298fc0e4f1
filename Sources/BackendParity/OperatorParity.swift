public import Compute
public import ComputeCPU
import Models

/// Runs each operator on the CPU backend (the float32 reference) and on another backend with the
/// same bf16-representable random inputs, and compares the outputs: `flexpert check-cuda`.
///
/// Errors are measured against the largest reference magnitude of the output, so a tolerance is
/// a fraction of the output's scale (bf16 keeps 8 bits of mantissa: 2⁻⁸ ≈ 0.4% per rounding).
public final class OperatorParity {
    public struct Result: Sendable {
        public let name: String
        public let error: Float
        public let tolerance: Float
        public var passed: Bool { error <= tolerance }
    }

    public let reference = CPUBackend(threads: 1)
    public let backend: any Backend
    private var generator = SplitMix64(seed: 20_261_123)
    public private(set) var results: [Result] = []

    public init(backend: any Backend) {
        self.backend = backend
    }

    /// A pair of tensors holding the same values: float32 on the CPU, the activation type on `backend`.
    public struct Pair {
        public let cpu: Tensor
        public let device: Tensor
    }

    /// Runs `work` on the reference and then on the backend; `pick` gives that backend's side of a pair.
    public func onBoth(_ work: (_ backend: any Backend, _ pick: (Pair) -> Tensor) throws -> Void) throws {
        try work(reference) { $0.cpu }
        try work(backend) { $0.device }
    }

    /// Values in ±`scale` that bf16 holds exactly, so both backends start from the same numbers.
    func random(_ count: Int, scale: Float = 1) -> [Float] {
        (0..<count).map { _ in
            Float(bitPattern: UInt32(HostTensor.bfloat16Bits((generator.nextUnitFloat() * 2 - 1) * scale)) << 16)
        }
    }

    func randomIndex(_ bound: Int) -> Int { Int(generator.next() % UInt64(bound)) }

    func activations(_ values: [Float], _ shape: Shape) throws -> Pair {
        try pair(values, shape, deviceType: backend.activationDType)
    }

    func float32(_ values: [Float], _ shape: Shape) throws -> Pair {
        try pair(values, shape, deviceType: .float32)
    }

    func weight(_ values: [Float], _ shape: Shape) throws -> Pair {
        try values.withUnsafeBytes {
            let host = HostTensor(bytes: $0, shape: shape, dtype: .float32, owner: nil)
            let cpu = try reference.makeTensor(shape, .float32, in: .weights)
            try reference.upload(host, into: cpu)
            return Pair(cpu: cpu, device: try backend.makeWeight(host))
        }
    }

    func integers(_ values: [Int32], _ shape: Shape) throws -> Pair {
        try values.withUnsafeBytes {
            let host = HostTensor(bytes: $0, shape: shape, dtype: .int32, owner: nil)
            let cpu = try reference.makeTensor(shape, .int32, in: .weights)
            let device = try backend.makeTensor(shape, .int32, in: .weights)
            try reference.upload(host, into: cpu)
            try backend.upload(host, into: device)
            return Pair(cpu: cpu, device: device)
        }
    }

    func empty(_ shape: Shape, _ dtype: DType? = nil) throws -> Pair {
        Pair(cpu: try reference.makeTensor(shape, dtype ?? .float32, in: .weights),
             device: try backend.makeTensor(shape, dtype ?? backend.activationDType, in: .weights))
    }

    private func pair(_ values: [Float], _ shape: Shape, deviceType: DType) throws -> Pair {
        try values.withUnsafeBytes {
            let host = HostTensor(bytes: $0, shape: shape, dtype: .float32, owner: nil)
            let cpu = try reference.makeTensor(shape, .float32, in: .weights)
            let device = try backend.makeTensor(shape, deviceType, in: .weights)
            try reference.upload(host, into: cpu)
            try backend.upload(host, into: device)
            return Pair(cpu: cpu, device: device)
        }
    }

    func floats(_ tensor: Tensor, on backend: any Backend) throws -> [Float] {
        try backend.synchronize()
        var values = [Float](repeating: 0, count: tensor.elementCount)
        try values.withUnsafeMutableBufferPointer { try backend.download(tensor, into: $0) }
        return values
    }

    func ints(_ tensor: Tensor, on backend: any Backend) throws -> [Int32] {
        try backend.synchronize()
        var values = [Int32](repeating: 0, count: tensor.elementCount)
        try values.withUnsafeMutableBufferPointer { try backend.download(tensor, into: $0) }
        return values
    }

    /// Records max |device − cpu| / max |cpu| for the pair's outputs.
    @discardableResult
    func compare(_ name: String, _ outputs: Pair, tolerance: Float) throws -> Float {
        let expected = try floats(outputs.cpu, on: reference)
        let actual = try floats(outputs.device, on: backend)
        var scale: Float = 1e-20, error: Float = 0
        for (want, got) in zip(expected, actual) {
            scale = max(scale, abs(want))
            error = max(error, got.isFinite ? abs(got - want) : .infinity)
        }
        let relative = error / scale
        results.append(Result(name: name, error: relative, tolerance: tolerance))
        return relative
    }

    /// Records the fraction of differing integers (a tolerance of 0 asks for equality).
    func compareIntegers(_ name: String, _ outputs: Pair, tolerance: Float) throws {
        let expected = try ints(outputs.cpu, on: reference)
        let actual = try ints(outputs.device, on: backend)
        let differing = zip(expected, actual).filter { $0 != $1 }.count
        results.append(Result(name: name, error: Float(differing) / Float(max(expected.count, 1)), tolerance: tolerance))
    }

    func record(_ name: String, error: Float, tolerance: Float) {
        results.append(Result(name: name, error: error, tolerance: tolerance))
    }
}
