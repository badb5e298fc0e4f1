/// A recorded step (a CUDA graph), replayed by the backend that recorded it; released with its
/// last reference.
public final class StepGraph {
    public let handle: OpaquePointer?
    private let release: () -> Void

    public init(handle: OpaquePointer?, release: @escaping () -> Void) {
        self.handle = handle
        self.release = release
    }

    deinit { release() }
}
