import Synchronization

/// A MoE layer's whole expert-parallel exchange as device work: routing to slots by the layer's
/// replica table, the counts per slot, the rows to the ranks that hold their slots, the rank's
/// own slots over what it received, the results back, and the weighted combine. The host reads
/// nothing during a step, so steps through it may be recorded as graphs and replayed.
///
/// Exchanges are SPMD: every rank of the group runs every MoE layer of every step, in the same
/// order (ranks without work step on a padding token).
/// - Important: Owned by one rank's step loop, like its backend.
public protocol DeviceExpertExchange: AnyObject {
    var rank: Int { get }
    var size: Int { get }
    /// The transport's name for logs and errors ("ipc").
    var transport: String { get }
    /// Copies between the group's ranks' device memory (they reach each other's, or the exchange
    /// could not run): what moves expert weights between them.
    var peerMemory: any PeerMemory { get }
    /// Routes MoE layer `moeLayer` (its index among the MoE layers) by `table` from the next step
    /// on: row e is the replica count of logical expert e, then its physical slots, padded to
    /// the exchange's width. Call between steps.
    func setPlacement(moeLayer: Int, table: [Int32]) throws
    /// `routing` holds logical expert ids and router weights of `x`'s tokens; `experts` are this
    /// rank's slots. Writes each token's weighted sum of its experts' outputs into `out`.
    func runExperts(_ x: Tensor, routing: Routing, batch: AttentionBatch, experts: ExpertWeights, moeLayer: Int,
                    into out: Tensor) throws
    /// Picks routed to each slot (MoE layers × slots per layer) since the last call, padding
    /// tokens left out; the counters start again from zero. Call between steps.
    func takeCounts() throws -> [Int64]
    /// Throws when a layer since the last call gave up waiting for a peer. Call between steps.
    func checkHealth() throws
    /// This rank's poison word (two int32s): once non-zero, every wait of the exchange ends and
    /// the step fails. What ``ExchangeInterruption`` sets from another thread.
    var poison: Tensor { get }
}

/// Ends, from any thread, the waits of a rank's rows transport (a layer waiting for a peer that
/// is known to be lost would otherwise wait until its timeout): for a device exchange, sets its
/// poison word through a stream of its own, which the step loop made for this; for collectives
/// whose host polls their exchanges (NCCL), raises their flag.
public struct ExchangeInterruption: Sendable {
    private let device: (stream: any TransferStream, poison: Tensor)?
    private let flag: InterruptFlag?

    public init(stream: any TransferStream, poison: Tensor) {
        device = (stream, poison)
        flag = nil
    }

    public init(flag: InterruptFlag) {
        device = nil
        self.flag = flag
    }

    /// Best effort: a device that cannot take the copy leaves the waits to their timeout.
    public func interrupt() {
        flag?.raise()
        guard let (stream, poison) = device else { return }
        try? stream.attachCurrentThread()
        try? stream.upload([Int32(1), 0], into: poison)
        try? stream.synchronize()
    }
}

/// Raised from another thread to end a host-polled wait at once; the waiter sees it at its next poll.
public final class InterruptFlag: Sendable {
    private let raised = Atomic(false)

    public init() {}

    public func raise() { raised.store(true, ordering: .releasing) }
    public var isRaised: Bool { raised.load(ordering: .acquiring) }
}

/// What carries an expert-parallel rank's MoE rows: host staging over the group (neither given),
/// a ``DeviceCollectives`` for the rows with the host planning them, or a ``DeviceExpertExchange``
/// doing the whole layer on the device.
public struct ExpertTransport {
    public let collectives: (any DeviceCollectives)?
    public let exchange: (any DeviceExpertExchange)?

    public init(collectives: (any DeviceCollectives)? = nil, exchange: (any DeviceExpertExchange)? = nil) {
        precondition(collectives == nil || exchange == nil, "one transport per rank")
        self.collectives = collectives
        self.exchange = exchange
    }

    public static var hostStaged: ExpertTransport { ExpertTransport() }

    public var name: String { exchange?.transport ?? collectives?.transport ?? "host" }
}
