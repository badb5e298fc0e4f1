/// float32 values on the host that a ``HostTensor`` views: weights derived or dequantized at load
/// time. A weight made from them may alias them (the CPU backend's float32 weights do), so the
/// buffer lives as long as the tensors holding it as their owner.
public final class HostFloatBuffer {
    public let buffer: UnsafeMutableBufferPointer<Float>

    public init(_ values: [Float]) {
        buffer = .allocate(capacity: values.count)
        _ = buffer.initialize(from: values)
    }

    deinit { buffer.deallocate() }

    /// The values as a float32 host tensor of `shape`.
    public func tensor(_ shape: Shape) -> HostTensor {
        HostTensor(bytes: UnsafeRawBufferPointer(buffer), shape: shape, dtype: .float32, owner: self)
    }
}
