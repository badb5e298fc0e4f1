internal import CUDAShim
public import Compute

/// ``PeerMemory`` through CUDA IPC: a tensor is shared as the IPC handle of its allocation, and a
/// peer's allocation is mapped once (lazily enabling peer access where it is on another GPU) until
/// ``finish()``. Copies are `cuMemcpyDtoDAsync` on one stream: the backend's (its step loop's
/// moves of experts) or a ``CUDATransferStream``'s (a preparation's).
/// - Important: Owned by one thread at a time, like the stream's owner.
public final class CUDAPeerMemory: PeerMemory {
    private let driver: CUDADriver
    private let stream: OpaquePointer?
    /// What owns `stream`, kept while copies may run on it.
    private let owner: AnyObject
    /// Peers' allocations mapped here, by handle.
    private var mapped: [[UInt8]: UInt64] = [:]
    /// Whether copies were queued since the last ``finish()`` (a rank that only shares waits for nothing).
    private var copying = false

    /// Copies on the backend's stream.
    public convenience init(backend: CUDABackend) { self.init(driver: backend.driver, stream: backend.stream, owner: backend) }

    init(driver: CUDADriver, stream: OpaquePointer?, owner: AnyObject) {
        self.driver = driver
        self.stream = stream
        self.owner = owner
    }

    deinit {
        // Copies still queued read the peers' memory: they must land before it is unmapped.
        if copying { _ = driver.cuStreamSynchronize(stream) }
        unmap()
    }

    public func share(_ tensor: Tensor) throws -> SharedTensor {
        var handle = [UInt8](repeating: 0, count: Int(FLEXPERT_CUDA_IPC_HANDLE_BYTES))
        try handle.withUnsafeMutableBytes {
            try driver.check(driver.cuIpcGetMemHandle($0.baseAddress!, UInt64(tensor.storage.address)), "cuIpcGetMemHandle")
        }
        return SharedTensor(handle: handle, byteOffset: tensor.byteOffset, byteCount: tensor.byteCount)
    }

    public func copy(from source: SharedTensor, byteOffset: Int, into target: Tensor) throws {
        guard byteOffset >= 0, byteOffset + target.byteCount <= source.byteCount,
              source.handle.count == Int(FLEXPERT_CUDA_IPC_HANDLE_BYTES) else {
            throw ComputeError.shapeMismatch(operation: "PeerMemory.copy",
                                             detail: "\(target.byteCount) bytes at \(byteOffset) of a shared tensor of \(source.byteCount)")
        }
        let base: UInt64
        if let known = mapped[source.handle] {
            base = known
        } else {
            var address: UInt64 = 0
            // CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS
            let result = source.handle.withUnsafeBytes { flexpert_cuda_ipc_open_mem_handle(driver.cuIpcOpenMemHandle, &address, $0.baseAddress!, 1) }
            try driver.check(result, "cuIpcOpenMemHandle")
            mapped[source.handle] = address
            base = address
        }
        try driver.check(driver.cuMemcpyDtoDAsync(target.device, base + UInt64(source.byteOffset + byteOffset), target.byteCount,
                                                  stream), "cuMemcpyDtoDAsync")
        copying = true
    }

    public func copy(_ source: Tensor, into target: Tensor) throws {
        guard source.byteCount == target.byteCount else {
            throw ComputeError.shapeMismatch(operation: "PeerMemory.copy", detail: "\(source) into \(target)")
        }
        try driver.check(driver.cuMemcpyDtoDAsync(target.device, source.device, target.byteCount, stream), "cuMemcpyDtoDAsync")
        copying = true
    }

    public func finish() throws {
        if copying { try driver.check(driver.cuStreamSynchronize(stream), "cuStreamSynchronize") }
        copying = false
        unmap()
    }

    private func unmap() {
        for address in mapped.values { _ = driver.cuIpcCloseMemHandle(address) }
        mapped.removeAll()
    }
}
