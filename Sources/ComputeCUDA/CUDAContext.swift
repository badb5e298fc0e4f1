/// A device's primary context: the backend's thread makes it current, and so may a thread that
/// works beside it (a transfer stream's, an NCCL join's).
/// Unchecked Sendable: a CUcontext handle, which the driver lets any thread make current.
struct CUDAContext: @unchecked Sendable {
    let driver: CUDADriver
    let handle: OpaquePointer?

    func makeCurrent() throws { try driver.check(driver.cuCtxSetCurrent(handle), "cuCtxSetCurrent") }
}
