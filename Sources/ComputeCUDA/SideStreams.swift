import Compute

/// Streams beside the backend's, each with its own cuBLAS handle and workspace, for the per-expert
/// GEMMs of a prefill-sized step: one expert's GEMM (a few hundred rows) fills a fraction of the
/// GPU and is over in microseconds, so run one after another they leave it mostly idle between
/// launches. Spread round-robin over these streams they overlap. `fork` orders the side streams
/// after everything queued on the main stream so far; `join` orders the main stream after
/// everything queued on them. Only eager steps use them (a captured graph records one stream).
/// They live as long as the backend's process, like the backend's own stream and handle.
///
/// - Important: Owned by the backend's thread, like the backend.
final class SideStreams {
    let count: Int
    private let driver: CUDADriver
    private var streams: [OpaquePointer?] = []
    private(set) var blasHandles: [OpaquePointer?] = []
    private var forked: OpaquePointer?
    private var finished: [OpaquePointer?] = []
    private var workspaces: [TensorStorage] = []

    init(count: Int, driver: CUDADriver, blas: CUBLASLibrary, workspaceBytes: Int,
         allocate: (Int) throws -> TensorStorage) throws {
        self.count = count
        self.driver = driver
        try driver.check(driver.cuEventCreate(&forked, 2), "cuEventCreate")  // CU_EVENT_DISABLE_TIMING
        for _ in 0..<count {
            var stream: OpaquePointer?, handle: OpaquePointer?, event: OpaquePointer?
            try driver.check(driver.cuStreamCreate(&stream, 1), "cuStreamCreate")  // CU_STREAM_NON_BLOCKING
            try blas.check(blas.cublasCreate(&handle), "cublasCreate")
            try blas.check(blas.cublasSetStream(handle, stream), "cublasSetStream")
            let workspace = try allocate(workspaceBytes)
            try blas.check(blas.cublasSetWorkspace(handle, UInt64(workspace.address), workspaceBytes), "cublasSetWorkspace")
            try driver.check(driver.cuEventCreate(&event, 2), "cuEventCreate")
            streams.append(stream)
            blasHandles.append(handle)
            finished.append(event)
            workspaces.append(workspace)
        }
    }

    func fork(after main: OpaquePointer?) throws {
        try driver.check(driver.cuEventRecord(forked, main), "cuEventRecord")
        for stream in streams { try driver.check(driver.cuStreamWaitEvent(stream, forked, 0), "cuStreamWaitEvent") }
    }

    func join(into main: OpaquePointer?) throws {
        for (stream, event) in zip(streams, finished) {
            try driver.check(driver.cuEventRecord(event, stream), "cuEventRecord")
            try driver.check(driver.cuStreamWaitEvent(main, event, 0), "cuStreamWaitEvent")
        }
    }
}
