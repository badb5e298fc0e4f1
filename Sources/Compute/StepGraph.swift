/// A recorded step (a CUDA graph), replayed by the backend that recorded it; released with its
/// last reference.
public final class StepGraph {
    public let handle: OpaquePointer?
    /// Run by the backend after each replay is launched (a profile reading the graph's timings).
    public let afterReplay: (() throws -> Void)?
    private let release: () -> Void

    public init(handle: OpaquePointer?, afterReplay: (() throws -> Void)? = nil, release: @escaping () -> Void) {
        self.handle = handle
        self.afterReplay = afterReplay
        self.release = release
    }

    deinit { release() }
}
