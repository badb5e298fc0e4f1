public import Compute

/// A CPU backend's tensors are host memory: copies are `memcpy`s on the calling thread, done
/// when they return.
public final class CPUTransferStream: TransferStream {
    public init() {}

    public func attachCurrentThread() throws {}

    public func upload(_ source: HostTensor, into tensor: Tensor) throws { try Self.copy(source, into: tensor) }

    public func downloadBytes(_ tensor: Tensor, into bytes: UnsafeMutableRawBufferPointer) throws { try Self.copy(tensor, into: bytes) }

    public func synchronize() throws {}

    public func makePeerMemory() -> (any PeerMemory)? { nil }

    static func copy(_ source: HostTensor, into tensor: Tensor) throws {
        guard source.shape.elementCount == tensor.elementCount else {
            throw ComputeError.shapeMismatch(operation: "upload", detail: "\(source.shape) into \(tensor.shape)")
        }
        guard source.convert(to: tensor.dtype, into: UnsafeMutableRawPointer(bitPattern: tensor.address)!) else {
            throw ComputeError.unsupportedDType(operation: "upload \(source.dtype) into", tensor.dtype)
        }
    }

    static func copy(_ tensor: Tensor, into bytes: UnsafeMutableRawBufferPointer) throws {
        guard bytes.count >= tensor.byteCount else {
            throw ComputeError.shapeMismatch(operation: "downloadBytes", detail: "\(tensor) into \(bytes.count) bytes")
        }
        bytes.baseAddress!.copyMemory(from: UnsafeRawPointer(bitPattern: tensor.address)!, byteCount: tensor.byteCount)
    }
}
