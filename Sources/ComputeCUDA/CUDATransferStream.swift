public import Compute

/// A ``CUDABackend``'s ``TransferStream``: a CUDA stream of its own in the backend's context, so
/// that a preparation's copies neither wait behind the step loop's kernels nor enter its graphs.
/// Unchecked Sendable: a CUDA stream handle, used by one thread at a time.
public final class CUDATransferStream: TransferStream, @unchecked Sendable {
    let driver: CUDADriver
    private let context: CUDAContext
    let stream: OpaquePointer?

    /// On a thread where `context` is current.
    init(context: CUDAContext) throws {
        driver = context.driver
        self.context = context
        var stream: OpaquePointer?
        try driver.check(driver.cuStreamCreate(&stream, 0), "cuStreamCreate")
        self.stream = stream
    }

    deinit {
        _ = driver.cuStreamSynchronize(stream)
        _ = driver.cuStreamDestroy(stream)
    }

    public func attachCurrentThread() throws { try context.makeCurrent() }

    public func upload(_ source: HostTensor, into tensor: Tensor) throws {
        try Self.upload(source, into: tensor, driver: driver, stream: stream)
    }

    public func downloadBytes(_ tensor: Tensor, into bytes: UnsafeMutableRawBufferPointer) throws {
        guard bytes.count >= tensor.byteCount else {
            throw ComputeError.shapeMismatch(operation: "downloadBytes", detail: "\(tensor) into \(bytes.count) bytes")
        }
        try Self.copyOut(tensor, into: bytes.baseAddress!, driver: driver, stream: stream)
    }

    public func synchronize() throws {
        try driver.check(driver.cuStreamSynchronize(stream), "cuStreamSynchronize")
    }

    public func makePeerMemory() -> (any PeerMemory)? { CUDAPeerMemory(driver: driver, stream: stream, owner: self) }

    /// Copies `source` into `tensor` on `stream`; a conversion of its element type is waited for,
    /// since the converted bytes die with the call.
    static func upload(_ source: HostTensor, into tensor: Tensor, driver: CUDADriver, stream: OpaquePointer?) throws {
        guard source.shape.elementCount == tensor.elementCount else {
            throw ComputeError.shapeMismatch(operation: "upload", detail: "\(source.shape) into \(tensor.shape)")
        }
        if source.dtype == tensor.dtype {
            try driver.check(driver.cuMemcpyHtoDAsync(UInt64(tensor.address), source.bytes.baseAddress!, tensor.byteCount, stream),
                             "cuMemcpyHtoDAsync")
            return
        }
        var converted = [UInt8](repeating: 0, count: tensor.byteCount)
        guard converted.withUnsafeMutableBytes({ source.convert(to: tensor.dtype, into: $0.baseAddress!) }) else {
            throw ComputeError.unsupportedDType(operation: "upload \(source.dtype) into", tensor.dtype)
        }
        try converted.withUnsafeBytes {
            try driver.check(driver.cuMemcpyHtoDAsync(UInt64(tensor.address), $0.baseAddress!, tensor.byteCount, stream), "cuMemcpyHtoDAsync")
        }
        try driver.check(driver.cuStreamSynchronize(stream), "cuStreamSynchronize")
    }

    /// Copies `tensor`'s bytes out on `stream` and waits for them.
    static func copyOut(_ tensor: Tensor, into target: UnsafeMutableRawPointer, driver: CUDADriver, stream: OpaquePointer?) throws {
        try driver.check(driver.cuMemcpyDtoHAsync(target, UInt64(tensor.address), tensor.byteCount, stream), "cuMemcpyDtoHAsync")
        try driver.check(driver.cuStreamSynchronize(stream), "cuStreamSynchronize")
    }
}
