import Synchronization

/// A flag one task sets, once, and others read: a submission stopped at shutdown, a server closed.
final class SetOnceFlag: Sendable {
    private let flag = Atomic(false)

    var isSet: Bool { flag.load(ordering: .acquiring) }

    func set() { flag.store(true, ordering: .releasing) }
}
