/// The rendezvous store's wire protocol: one request frame, one response frame.
///
/// Request: an ``StoreOperation`` byte, then its fields. Response: a ``StoreStatus`` byte, then
/// the result (or an error message). A connection opens with `.hello` carrying the join token.
enum StoreOperation: UInt8 {
    case hello = 0
    /// key, value
    case set = 1
    /// key, timeout ms → value
    case get = 2
    /// key, delta → new value (i64)
    case add = 3
    /// key, has expected (u8), expected, desired → swapped (u8), current value
    case compareAndSet = 4
    /// key → existed (u8)
    case delete = 5
    /// key count, keys, timeout ms
    case waitForKeys = 6
}

enum StoreStatus: UInt8 {
    case ok = 0
    case timeout = 1
    case failure = 2
}
