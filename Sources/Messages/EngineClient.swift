/// How the front end reaches the engines that run its requests: one in-process engine loop, or,
/// with several ranks, a client that forwards over the network.
public protocol EngineClient: Sendable {
    func add(_ request: EngineRequest, sink: @escaping OutputSink)
    func abort(_ id: RequestID)
    /// One entry per rank.
    var rankStatistics: [EngineStatistics] { get }
    /// Why serving stopped, when it did.
    var failureReason: String? { get }
}
