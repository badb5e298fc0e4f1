import Synchronization

/// A flag one task sets, once, and others read: a submission stopped at shutdown, a server closed.
public final class SetOnceFlag: Sendable {
    private let flag = Atomic(false)

    public init() {}

    public var isSet: Bool { flag.load(ordering: .acquiring) }

    public func set() { flag.store(true, ordering: .releasing) }
}
