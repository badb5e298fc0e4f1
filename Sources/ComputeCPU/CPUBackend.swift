#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
public import Compute

/// The numerical reference: pure Swift, float32 compute, SIMD dot products, work split across
/// threads by output rows only (never along a reduction), so results are batch-invariant.
///
/// Weights of any floating type are held as float32: float32 checkpoint tensors are used in
/// place from the memory map, bf16 and f16 ones are converted once at load.
///
/// - Important: Owned by one rank's step loop; not thread-safe.
public final class CPUBackend: Backend {
    public let device: DeviceDescription
    public var activationDType: DType { .float32 }
    let scratch = ScratchArena(initialBytes: 4 << 20)
    /// Per-thread buffers for attention scores, grown before parallel loops, never inside them.
    var scoreBuffers: [UnsafeMutablePointer<Float>] = []
    var scoreBufferCount = 0
    let threadCount: Int

    /// - Parameter threads: worker threads of the parallel loops (default: every online core;
    ///   ranks sharing a machine split the cores between them).
    public init(threads: Int? = nil) {
        threadCount = max(1, threads ?? Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        device = DeviceDescription(name: "CPU", threadCount: threadCount)
    }

    deinit {
        for buffer in scoreBuffers { buffer.deallocate() }
    }

    /// Nothing binds CPU work to a thread.
    public func attachCurrentThread() throws {}

    /// `MemAvailable` of /proc/meminfo: free memory plus what the kernel can reclaim.
    public func availableMemoryBytes() throws -> Int {
        guard let file = fopen("/proc/meminfo", "r") else { return 0 }
        defer { fclose(file) }
        var line = [CChar](repeating: 0, count: 256)
        while fgets(&line, Int32(line.count), file) != nil {
            let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if text.hasPrefix("MemAvailable:") {
                let kilobytes = text.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
                return kilobytes * 1024
            }
        }
        return 0
    }

    /// Host memory is every process's: no share of it is this rank's to plan by.
    public func totalMemoryBytes() throws -> Int? { nil }

    public func makeTensor(_ shape: Shape, _ dtype: DType, in arena: Arena) throws -> Tensor {
        guard dtype == .float32 || dtype == .int32 else { throw ComputeError.unsupportedDType(operation: "makeTensor", dtype) }
        switch arena {
        case .weights, .kvCache:
            // Checked first: an allocation beyond the machine's memory would trap, or be killed by the kernel as it is
            // touched. 0: the memory left is not known here.
            let available = try availableMemoryBytes()
            guard let bytes = shape.byteCount(of: dtype), available == 0 || bytes <= available else {
                throw ComputeError.outOfMemory(operation: "a \(shape) \(dtype) tensor", requestedBytes: shape.byteCount(of: dtype),
                                               availableBytes: available)
            }
            return Tensor(storage: HostMemory.allocate(byteCount: bytes), shape: shape, dtype: dtype)
        case .scratch:
            return scratch.make(shape, dtype)
        }
    }

    public func beginStep() { scratch.reset() }

    public func scratchMark() -> Int { scratch.mark }

    public func releaseScratch(to mark: Int) { scratch.release(to: mark) }

    public var scratchGeneration: Int { 0 }

    /// Work runs eagerly on the calling thread: there are no launches to save.
    public var supportsStepGraphs: Bool { false }

    public func beginStepGraph() throws { throw ComputeError.unsupported("step graphs") }

    public func endStepGraph() throws -> StepGraph { throw ComputeError.unsupported("step graphs") }

    public func replay(_ graph: StepGraph) throws { throw ComputeError.unsupported("step graphs") }

    public func makeWeight(_ source: HostTensor) throws -> Tensor {
        if source.dtype == .float32, let base = source.bytes.baseAddress, UInt(bitPattern: base) % 4 == 0 {
            let owner = source.owner
            let storage = TensorStorage(address: UInt(bitPattern: base), byteCount: source.bytes.count) { _ = owner }
            return Tensor(storage: storage, shape: source.shape, dtype: .float32)
        }
        let tensor = try makeTensor(source.shape, .float32, in: .weights)
        try upload(source, into: tensor)
        return tensor
    }

    public func upload(_ source: HostTensor, into tensor: Tensor) throws { try CPUTransferStream.copy(source, into: tensor) }

    public func download(_ tensor: Tensor, into floats: UnsafeMutableBufferPointer<Float>) throws {
        guard tensor.dtype == .float32, floats.count >= tensor.elementCount else {
            throw ComputeError.shapeMismatch(operation: "download", detail: "\(tensor) into \(floats.count) floats")
        }
        floats.baseAddress!.update(from: tensor.floats, count: tensor.elementCount)
    }

    public func download(_ tensor: Tensor, into integers: UnsafeMutableBufferPointer<Int32>) throws {
        guard tensor.dtype == .int32, integers.count >= tensor.elementCount else {
            throw ComputeError.shapeMismatch(operation: "download", detail: "\(tensor) into \(integers.count) integers")
        }
        integers.baseAddress!.update(from: tensor.integers, count: tensor.elementCount)
    }

    public func downloadBytes(_ tensor: Tensor, into bytes: UnsafeMutableRawBufferPointer) throws {
        try CPUTransferStream.copy(tensor, into: bytes)
    }

    public func makeTransferStream() throws -> any TransferStream { CPUTransferStream() }

    /// Work runs eagerly on the calling thread's parallel loops, so there is nothing to wait for.
    public func synchronize() throws {}

    /// Work items per parallel loop: a few per thread, for load balance.
    var workItemLimit: Int { threadCount * 4 }

    /// Makes sure each of the ``workItemLimit`` work items has a score buffer of `count` floats.
    func reserveScoreBuffers(_ count: Int) {
        guard count > scoreBufferCount || scoreBuffers.count < workItemLimit else { return }
        for buffer in scoreBuffers { buffer.deallocate() }
        scoreBufferCount = max(count, 1024, scoreBufferCount * 2)
        scoreBuffers = (0..<workItemLimit).map { _ in UnsafeMutablePointer<Float>.allocate(capacity: scoreBufferCount) }
    }

    /// Splits `count` rows into at most ``workItemLimit`` chunks of at least `minimumChunk`.
    func rowChunks(_ count: Int, minimumChunk: Int = 8) -> (chunkCount: Int, chunkSize: Int) {
        let size = max(minimumChunk, (count + workItemLimit - 1) / workItemLimit)
        return ((count + size - 1) / size, size)
    }
}
