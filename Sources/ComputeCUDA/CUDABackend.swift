public import Compute
import Foundation

/// Runs Flexpert's operators on one NVIDIA GPU through the driver API, with kernels compiled by
/// NVRTC from `Kernels/kernels.cu` and dense matmuls in cuBLAS. Every CUDA library is opened at
/// run time, so a binary built with this backend still runs where there is no GPU:
/// ``load(deviceIndex:)`` then throws a ``CUDAError`` naming what is missing.
///
/// Weights, activations and the KV cache are bf16 (checkpoint tensors of other types are
/// converted at load); sums accumulate in float32; logits are float32.
///
/// - Important: Owned by one rank's step loop; the CUDA context is made current on the thread
///   that loads it, and every call must come from that thread or one that called
///   `attachCurrentThread()`. All work is ordered on one stream.
public final class CUDABackend: Backend {
    public let device: DeviceDescription
    /// The driver's ordinal of the GPU (CUdevice), for peer-access checks between ranks.
    public let deviceOrdinal: Int
    public var activationDType: DType { .bfloat16 }
    let driver: CUDADriver
    /// The device's primary context; current on the thread that loads the backend, and on the
    /// step loop's thread once it calls `attachCurrentThread()`.
    let context: CUDAContext
    let stream: OpaquePointer?
    /// Where the CUDA libraries came from; NCCL is opened from the same place when needed.
    let librarySource: CUDALibrarySource
    let kernels: CUDAKernels
    let blas: CUBLASLibrary
    let blasHandle: OpaquePointer?
    private let scratch: DeviceScratch
    /// Host staging for downloads of bf16 tensors as floats.
    private var staging: [UInt16] = []
    /// The expert offsets of a prefill-sized MoE layer, on the host (`expertMLP`).
    var expertOffsets: [Int32] = []
    /// Where a prefill's per-expert GEMMs run side by side; made by its first such layer.
    var blasLanes: BLASLanes?
    /// Set while a step graph is being recorded: nothing may wait for the GPU then.
    private(set) var isCapturing = false
    /// cuBLAS's workspace, set once so that it never allocates inside a captured graph.
    private var blasWorkspace: TensorStorage?
    /// When set, every launch and cuBLAS call is timed (and waited for); see ``KernelProfiler``.
    public private(set) var profiler: KernelProfiler?

    public func setProfiling(_ enabled: Bool) throws {
        profiler = enabled ? try KernelProfiler(driver: driver) : nil
        for kernel in kernels.all { kernel.profiler = profiler }
    }

    /// Device-to-device copy bandwidth in bytes per second, reads and writes counted (the figure
    /// performance.md's floors divide by): the best of a few copies of `bytes`.
    public func measureCopyBandwidth(bytes: Int = 1 << 30) throws -> Double {
        let source = try allocate(byteCount: bytes), target = try allocate(byteCount: bytes)
        var start: OpaquePointer?, end: OpaquePointer?
        try driver.check(driver.cuEventCreate(&start, 0), "cuEventCreate")
        try driver.check(driver.cuEventCreate(&end, 0), "cuEventCreate")
        defer {
            _ = driver.cuEventDestroy(start)
            _ = driver.cuEventDestroy(end)
        }
        var best = Double.infinity
        for _ in 0..<5 {
            try driver.check(driver.cuEventRecord(start, stream), "cuEventRecord")
            try driver.check(driver.cuMemcpyDtoDAsync(UInt64(target.address), UInt64(source.address), bytes, stream), "cuMemcpyDtoDAsync")
            try driver.check(driver.cuEventRecord(end, stream), "cuEventRecord")
            try driver.check(driver.cuEventSynchronize(end), "cuEventSynchronize")
            var milliseconds: Float = 0
            try driver.check(driver.cuEventElapsedTime(&milliseconds, start, end), "cuEventElapsedTime")
            best = min(best, Double(milliseconds) / 1000)
        }
        return Double(2 * bytes) / best
    }

    /// Whether a GPU and the libraries are usable here; tests use it to skip.
    public static var isAvailable: Bool { (try? CUDADriver()).map { driver in
        var count: Int32 = 0
        return driver.cuInit(0) == 0 && driver.cuDeviceGetCount(&count) == 0 && count > 0
    } ?? false }

    /// GPUs the driver sees (after `CUDA_VISIBLE_DEVICES`); ranks of one machine take one each.
    public static func deviceCount(libraries: CUDALibrarySource = .system) throws -> Int {
        let driver = try CUDADriver(source: libraries)
        try driver.check(driver.cuInit(0), "cuInit")
        var count: Int32 = 0
        try driver.check(driver.cuDeviceGetCount(&count), "cuDeviceGetCount")
        return Int(count)
    }

    /// The driver, initialised, and its handle of GPU `index`.
    private static func openDevice(index: Int, libraries: CUDALibrarySource) throws -> (CUDADriver, Int32) {
        let driver = try CUDADriver(source: libraries)
        try driver.check(driver.cuInit(0), "cuInit")
        var count: Int32 = 0
        try driver.check(driver.cuDeviceGetCount(&count), "cuDeviceGetCount")
        guard count > index else { throw CUDAError.noDevice }
        var device: Int32 = 0
        try driver.check(driver.cuDeviceGet(&device, Int32(index)), "cuDeviceGet")
        return (driver, device)
    }

    /// The driver's name for GPU `index` and its whole memory in bytes, without making a context
    /// (what the serving defaults are picked by, before any rank starts).
    public static func describeDevice(index: Int = 0, libraries: CUDALibrarySource = .system) throws -> (name: String, memoryBytes: Int) {
        let (driver, device) = try openDevice(index: index, libraries: libraries)
        var name = [CChar](repeating: 0, count: 256)
        try driver.check(driver.cuDeviceGetName(&name, 256, device), "cuDeviceGetName")
        var bytes = 0
        try driver.check(driver.cuDeviceTotalMem(&bytes, device), "cuDeviceTotalMem")
        return (cText(name), bytes)
    }

    /// - Parameter libraries: `.system`, or the emulator's table (tests).
    public static func load(deviceIndex: Int = 0, libraries: CUDALibrarySource = .system) throws -> CUDABackend {
        let (driver, device) = try openDevice(index: deviceIndex, libraries: libraries)
        var major: Int32 = 0, minor: Int32 = 0, multiprocessors: Int32 = 0
        try driver.check(driver.cuDeviceGetAttribute(&major, 75, device), "cuDeviceGetAttribute(major)")
        try driver.check(driver.cuDeviceGetAttribute(&minor, 76, device), "cuDeviceGetAttribute(minor)")
        try driver.check(driver.cuDeviceGetAttribute(&multiprocessors, 16, device), "cuDeviceGetAttribute(multiprocessors)")
        guard major >= 8 else {
            throw CUDAError.unsupportedDevice("compute capability \(major).\(minor); Flexpert's bf16 tensor-core kernels need 8.0 or newer")
        }
        var name = [CChar](repeating: 0, count: 256)
        _ = driver.cuDeviceGetName(&name, 256, device)
        var context: OpaquePointer?
        try driver.check(driver.cuDevicePrimaryCtxRetain(&context, device), "cuDevicePrimaryCtxRetain")
        try driver.check(driver.cuCtxSetCurrent(context), "cuCtxSetCurrent")
        var stream: OpaquePointer?
        try driver.check(driver.cuStreamCreate(&stream, 0), "cuStreamCreate")
        let blas = try CUBLASLibrary(source: libraries)
        var handle: OpaquePointer?
        try blas.check(blas.cublasCreate(&handle), "cublasCreate")
        try blas.check(blas.cublasSetStream(handle, stream), "cublasSetStream")
        let compiler = NVRTCCompiler(nvrtc: try NVRTCLibrary(source: libraries), architecture: "sm_\(major)\(minor)")
        let kernels = try CUDAKernels(driver: driver, compiler: compiler, stream: stream)
        let description = DeviceDescription(name: "\(cText(name)) sm_\(major)\(minor), NVRTC \(compiler.version)",
                                            threadCount: Int(multiprocessors))
        let backend = CUDABackend(driver: driver, context: context, stream: stream, kernels: kernels, blas: blas,
                                  blasHandle: handle, device: description, deviceOrdinal: Int(device), librarySource: libraries)
        let workspaceBytes = 32 << 20
        let workspace = try backend.allocate(byteCount: workspaceBytes)
        try blas.check(blas.cublasSetWorkspace(handle, UInt64(workspace.address), workspaceBytes), "cublasSetWorkspace")
        backend.blasWorkspace = workspace
        return backend
    }

    private init(driver: CUDADriver, context: OpaquePointer?, stream: OpaquePointer?, kernels: CUDAKernels, blas: CUBLASLibrary,
                 blasHandle: OpaquePointer?, device: DeviceDescription, deviceOrdinal: Int, librarySource: CUDALibrarySource) {
        self.driver = driver
        self.deviceOrdinal = deviceOrdinal
        self.librarySource = librarySource
        self.context = CUDAContext(driver: driver, handle: context)
        self.stream = stream
        self.kernels = kernels
        self.blas = blas
        self.blasHandle = blasHandle
        self.device = device
        scratch = DeviceScratch(driver: driver)
    }

    func allocate(byteCount: Int) throws -> TensorStorage {
        var address: UInt64 = 0
        let size = max(byteCount, 256)
        guard driver.cuMemAlloc(&address, size) == 0 else {
            var free = 0, total = 0
            _ = driver.cuMemGetInfo(&free, &total)
            throw CUDAError.outOfMemory(requestedBytes: size, freeBytes: free, totalBytes: total)
        }
        try driver.check(driver.cuMemsetD8(address, 0, size), "cuMemsetD8")
        let driver = driver
        return TensorStorage(address: UInt(address), byteCount: byteCount) { _ = driver.cuMemFree(address) }
    }

    public func attachCurrentThread() throws { try context.makeCurrent() }

    public func makeTransferStream() throws -> any TransferStream { try CUDATransferStream(context: context) }

    public func availableMemoryBytes() throws -> Int {
        var free = 0, total = 0
        try driver.check(driver.cuMemGetInfo(&free, &total), "cuMemGetInfo")
        return free
    }

    public func totalMemoryBytes() throws -> Int? {
        var free = 0, total = 0
        try driver.check(driver.cuMemGetInfo(&free, &total), "cuMemGetInfo")
        return total
    }

    public func makeTensor(_ shape: Shape, _ dtype: DType, in arena: Arena) throws -> Tensor {
        switch arena {
        case .weights, .kvCache:
            return Tensor(storage: try allocate(byteCount: shape.elementCount * dtype.byteCount), shape: shape, dtype: dtype)
        case .scratch:
            return try scratch.make(shape, dtype, backend: self)
        }
    }

    public func beginStep() { scratch.reset(backend: self) }

    public func scratchMark() -> Int { scratch.mark }

    public func releaseScratch(to mark: Int) { scratch.release(to: mark) }

    public var scratchGeneration: Int { scratch.generation }

    public var supportsStepGraphs: Bool { true }

    public func beginStepGraph() throws {
        // CU_STREAM_CAPTURE_MODE_THREAD_LOCAL: other threads' CUDA calls do not disturb the capture.
        try driver.check(driver.cuStreamBeginCapture(stream, 1), "cuStreamBeginCapture")
        isCapturing = true
        profiler?.beginCapture()
    }

    public func endStepGraph() throws -> StepGraph {
        let probes = profiler?.endCapture() ?? []
        isCapturing = false
        let driver = driver
        var graph: OpaquePointer?
        do {
            try driver.check(driver.cuStreamEndCapture(stream, &graph), "cuStreamEndCapture")
        } catch {
            KernelProfiler.destroy(probes, driver: driver)
            throw error
        }
        defer { _ = driver.cuGraphDestroy(graph) }
        var executable: OpaquePointer?
        do {
            try driver.check(driver.cuGraphInstantiate(&executable, graph, 0), "cuGraphInstantiateWithFlags")
        } catch {
            KernelProfiler.destroy(probes, driver: driver)
            throw error
        }
        guard let profiler, !probes.isEmpty else {
            return StepGraph(handle: executable) { _ = driver.cuGraphExecDestroy(executable) }
        }
        let stream = stream
        return StepGraph(handle: executable, afterReplay: {
            try driver.check(driver.cuStreamSynchronize(stream), "cuStreamSynchronize")
            try profiler.collect(probes)
        }, release: {
            _ = driver.cuGraphExecDestroy(executable)
            KernelProfiler.destroy(probes, driver: driver)
        })
    }

    public func replay(_ graph: StepGraph) throws {
        try driver.check(driver.cuGraphLaunch(graph.handle, stream), "cuGraphLaunch")
        try graph.afterReplay?()
    }

    public func makeWeight(_ source: HostTensor) throws -> Tensor {
        let dtype: DType = source.dtype == .int32 ? .int32 : .bfloat16
        let tensor = try makeTensor(source.shape, dtype, in: .weights)
        try upload(source, into: tensor)
        return tensor
    }

    public func upload(_ source: HostTensor, into tensor: Tensor) throws {
        try CUDATransferStream.upload(source, into: tensor, driver: driver, stream: stream)
    }

    public func download(_ tensor: Tensor, into floats: UnsafeMutableBufferPointer<Float>) throws {
        guard tensor.dtype.isFloatingPoint, floats.count >= tensor.elementCount else {
            throw ComputeError.shapeMismatch(operation: "download", detail: "\(tensor) into \(floats.count) floats")
        }
        if tensor.dtype == .float32 {
            try copyOut(tensor, into: UnsafeMutableRawPointer(floats.baseAddress!))
            return
        }
        if staging.count < tensor.elementCount { staging = [UInt16](repeating: 0, count: tensor.elementCount) }
        try staging.withUnsafeMutableBytes { bytes in
            try copyOut(tensor, into: bytes.baseAddress!)
            let host = HostTensor(bytes: UnsafeRawBufferPointer(rebasing: bytes[0..<tensor.byteCount]), shape: tensor.shape,
                                  dtype: tensor.dtype, owner: nil)
            guard host.convert(to: .float32, into: UnsafeMutableRawPointer(floats.baseAddress!)) else {
                throw ComputeError.unsupportedDType(operation: "download", tensor.dtype)
            }
        }
    }

    private func copyOut(_ tensor: Tensor, into target: UnsafeMutableRawPointer) throws {
        try CUDATransferStream.copyOut(tensor, into: target, driver: driver, stream: stream)
    }

    public func download(_ tensor: Tensor, into integers: UnsafeMutableBufferPointer<Int32>) throws {
        guard tensor.dtype == .int32, integers.count >= tensor.elementCount else {
            throw ComputeError.shapeMismatch(operation: "download", detail: "\(tensor) into \(integers.count) integers")
        }
        try copyOut(tensor, into: UnsafeMutableRawPointer(integers.baseAddress!))
    }

    public func downloadBytes(_ tensor: Tensor, into bytes: UnsafeMutableRawBufferPointer) throws {
        guard bytes.count >= tensor.byteCount else {
            throw ComputeError.shapeMismatch(operation: "downloadBytes", detail: "\(tensor) into \(bytes.count) bytes")
        }
        try copyOut(tensor, into: bytes.baseAddress!)
    }

    public func synchronize() throws {
        try driver.check(driver.cuStreamSynchronize(stream), "cuStreamSynchronize")
    }
}

/// The text of a NUL-terminated C buffer.
func cText(_ buffer: [CChar]) -> String {
    String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// The step's scratch memory on the device: a bump allocator over one block. A step that needs
/// more gets separate overflow allocations, which marks release like the block's own tensors (a
/// layer's intermediates die with the layer, so a first large prefill costs one layer's worth of
/// overflow, not the whole model's); at the next step boundary the block is replaced by one that
/// holds the step's peak.
final class DeviceScratch {
    private let driver: CUDADriver
    private var block: TensorStorage?
    private var nextBlockBytes = 64 << 20
    private var used = 0
    private var overflow: [TensorStorage] = []
    private var overflowBytes = 0
    private var peakBytes = 0
    /// Counts replacements of the block: what a recorded graph's addresses depend on.
    private(set) var generation = 0

    init(driver: CUDADriver) { self.driver = driver }

    func reset(backend: CUDABackend) {
        if peakBytes > (block?.byteCount ?? 0) {
            // Kernels of the last step may still read the old memory.
            _ = driver.cuCtxSynchronize()
            nextBlockBytes = max(nextBlockBytes, peakBytes / 4 * 5)
            overflow.removeAll()
            overflowBytes = 0
            block = nil
        }
        // Allocated here rather than by the next `make`, which may be inside a graph capture
        // (where allocating is not allowed); a failure is retried, and thrown, by that `make`.
        if block == nil, let fresh = try? backend.allocate(byteCount: nextBlockBytes) {
            block = fresh
            generation += 1
        }
        used = 0
        peakBytes = 0
    }

    /// Tensors made after `mark` die at `release(to:)`: the block's offset in the low bits, the
    /// number of overflow allocations above them.
    var mark: Int { used | (overflow.count << 48) }

    func release(to mark: Int) {
        let keep = mark >> 48
        if overflow.count > keep {
            // Kernels queued before this point may still use what is freed.
            _ = driver.cuCtxSynchronize()
            while overflow.count > keep { overflowBytes -= overflow.removeLast().byteCount }
        }
        used = min(used, mark & ((1 << 48) - 1))
    }

    func make(_ shape: Shape, _ dtype: DType, backend: CUDABackend) throws -> Tensor {
        let bytes = (shape.elementCount * dtype.byteCount + 255) / 256 * 256
        if block == nil {
            block = try backend.allocate(byteCount: nextBlockBytes)
            generation += 1
        }
        if let block, used + bytes <= block.byteCount {
            let tensor = Tensor(storage: block, byteOffset: used, shape: shape, dtype: dtype)
            used += bytes
            peakBytes = max(peakBytes, used + overflowBytes)
            return tensor
        }
        let storage = try backend.allocate(byteCount: bytes)
        overflow.append(storage)
        overflowBytes += bytes
        peakBytes = max(peakBytes, used + overflowBytes)
        return Tensor(storage: storage, shape: shape, dtype: dtype)
    }
}
