import TestSupport

/// ``onRanks(_:limit:_:)`` for tests that need every rank's value: the first rank's error is thrown.
func onThreadRanks<Value: Sendable>(_ count: Int, _ body: @escaping @Sendable (_ rank: Int) throws -> Value) throws -> [Value] {
    try onRanks(count, body).map { try $0.get() }
}
