import Compute

/// Side streams with a cuBLAS handle and workspace each, for GEMMs too small to fill the GPU one
/// at a time: a prefill's per-expert GEMMs (512 rows × 1,536 outputs makes 48 tiles of 128 × 128
/// for 132 multiprocessors) run `count` at once, forked from the backend's stream and joined back
/// to it by events, so that work after the join sees every lane's results.
///
/// Owned by the backend's thread, like its stream; made at the first step that needs them.
final class BLASLanes {
    struct Lane {
        let stream: OpaquePointer?
        let handle: OpaquePointer?
        /// Recorded on the lane when its share is enqueued; the backend's stream waits for it.
        let done: OpaquePointer?
    }

    let lanes: [Lane]
    private let forked: OpaquePointer?
    private let driver: CUDADriver
    private let blas: CUBLASLibrary
    private var workspaces: [TensorStorage] = []

    init(count: Int, backend: CUDABackend, workspaceBytes: Int) throws {
        driver = backend.driver
        blas = backend.blas
        var event: OpaquePointer?
        // CU_EVENT_DISABLE_TIMING: ordering only.
        try driver.check(driver.cuEventCreate(&event, 2), "cuEventCreate")
        forked = event
        var made: [Lane] = []
        for _ in 0..<count {
            var stream: OpaquePointer?, handle: OpaquePointer?, done: OpaquePointer?
            // CU_STREAM_NON_BLOCKING: no implicit order with the legacy default stream.
            try driver.check(driver.cuStreamCreate(&stream, 1), "cuStreamCreate")
            try blas.check(blas.cublasCreate(&handle), "cublasCreate")
            try blas.check(blas.cublasSetStream(handle, stream), "cublasSetStream")
            let workspace = try backend.allocate(byteCount: workspaceBytes)
            try blas.check(blas.cublasSetWorkspace(handle, UInt64(workspace.address), workspaceBytes), "cublasSetWorkspace")
            workspaces.append(workspace)
            try driver.check(driver.cuEventCreate(&done, 2), "cuEventCreate")
            made.append(Lane(stream: stream, handle: handle, done: done))
        }
        lanes = made
    }

    /// Every lane's later work waits for what `stream` has enqueued so far.
    func fork(from stream: OpaquePointer?) throws {
        try driver.check(driver.cuEventRecord(forked, stream), "cuEventRecord")
        for lane in lanes { try driver.check(driver.cuStreamWaitEvent(lane.stream, forked, 0), "cuStreamWaitEvent") }
    }

    /// `stream`'s later work waits for what every lane has enqueued so far.
    func join(into stream: OpaquePointer?) throws {
        for lane in lanes {
            try driver.check(driver.cuEventRecord(lane.done, lane.stream), "cuEventRecord")
            try driver.check(driver.cuStreamWaitEvent(stream, lane.done, 0), "cuStreamWaitEvent")
        }
    }

    deinit {
        _ = driver.cuCtxSynchronize()
        for lane in lanes {
            _ = blas.cublasDestroy(lane.handle)
            _ = driver.cuStreamDestroy(lane.stream)
            _ = driver.cuEventDestroy(lane.done)
        }
        _ = driver.cuEventDestroy(forked)
    }
}
