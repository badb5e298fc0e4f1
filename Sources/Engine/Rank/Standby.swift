public import Compute
public import Experts
import Foundation
public import Models
import Parallelism
import Synchronization
public import Transport

/// How a rank reaches the cluster's store to build new groups, and where its peers reach it.
public struct ClusterAccess: Sendable {
    public let storeHost: String
    public let storePort: Int
    public let token: String
    /// This rank's address for its peers.
    public let host: String
    /// How long preparing a reconfiguration may take before it fails.
    public let prepareTimeout: Duration

    public init(storeHost: String, storePort: Int, token: String, host: String, prepareTimeout: Duration) {
        self.storeHost = storeHost
        self.storePort = storePort
        self.token = token
        self.host = host
        self.prepareTimeout = prepareTimeout
    }

    func connect() throws -> StoreClient { try StoreClient(host: storeHost, port: storePort, token: token) }
}

/// What rank 0 of a growing group broadcasts to the newcomers once the standby group stands: the
/// old size and the placements of the move (every old rank computed them from the same loads).
/// The new size does not travel with it: it is the standby group's, from the prepare command.
public struct StandbyPlan: Codable, Sendable, Equatable {
    public var oldSize: Int
    /// The standby group's size (not encoded: a receiver takes its group's).
    public var size: Int
    /// Physical-to-logical maps by decoder layer (`nil` for dense layers).
    public var intermediate: [[LogicalExpert]?]
    public var target: [[LogicalExpert]?]
    /// The target's replicas of each expert in replica order (what the old ranks route by).
    public var targetReplicaOrder: [[[PhysicalSlot]]?]
    public var experts: Int

    private enum CodingKeys: String, CodingKey {
        case oldSize, intermediate, target, targetReplicaOrder, experts
    }

    /// Decodes what ``StandbyExchange/announce`` sent, for a group of `size` ranks.
    init(decoding bytes: [UInt8], size: Int) throws {
        let decoder = JSONDecoder()
        decoder.userInfo[Self.sizeKey] = size
        self = try decoder.decode(StandbyPlan.self, from: Data(bytes))
    }

    private static let sizeKey = CodingUserInfoKey(rawValue: "flexpert.standby-size")!

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        guard let size = decoder.userInfo[Self.sizeKey] as? Int else {
            throw DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "a standby plan decodes only for a group's size"))
        }
        oldSize = try container.decode(Int.self, forKey: .oldSize)
        self.size = size
        intermediate = try container.decode([[LogicalExpert]?].self, forKey: .intermediate)
        target = try container.decode([[LogicalExpert]?].self, forKey: .target)
        targetReplicaOrder = try container.decode([[[PhysicalSlot]]?].self, forKey: .targetReplicaOrder)
        experts = try container.decode(Int.self, forKey: .experts)
    }

    public init(oldSize: Int, size: Int, placement: ElasticPlacement) {
        self.oldSize = oldSize
        self.size = size
        intermediate = placement.intermediate.map { $0?.physicalToLogical }
        target = placement.target.map { $0?.physicalToLogical }
        targetReplicaOrder = placement.target.map { $0?.logicalToPhysical }
        experts = placement.target.compactMap { $0 }.first?.logicalExpertCount ?? 0
    }

    /// The placements the group serves with at the commit.
    public func intermediatePlacements() throws -> [ExpertPlacement?] {
        try intermediate.map { map in
            try map.map { try ExpertPlacement(logicalExpertCount: experts, rankCount: size, physicalToLogical: $0) }
        }
    }

    /// The placements EPLB moves the group to after the commit, routed as the old ranks route them.
    public func targetPlacements() throws -> [ExpertPlacement?] {
        guard targetReplicaOrder.count == target.count else {
            throw TransportError.protocolViolation("a plan of \(target.count) layers with \(targetReplicaOrder.count) replica orders")
        }
        return try zip(target, targetReplicaOrder).map { map, order in
            try map.map { try ExpertPlacement(logicalExpertCount: experts, rankCount: size, physicalToLogical: $0, replicaOrder: order) }
        }
    }

    /// Expert slots each rank holds in every MoE layer (what a newcomer allocates before its
    /// slots are filled by ``newcomerTransfers(layer:)``).
    public func slotsPerRank() -> Int { (intermediate.compactMap { $0 }.first?.count ?? 0) / size }

    /// The copies that fill the newcomers' slots of `layer` from the old ranks' slots.
    public func newcomerTransfers(layer: Int) -> [ExpertTransfer] {
        guard let map = intermediate[layer] else { return [] }
        let perRank = slotsPerRank()
        let old = map.prefix(oldSize * perRank).map { Optional($0) } + [LogicalExpert?](repeating: nil, count: (size - oldSize) * perRank)
        return ExpertMovePlan.transfers(from: old, to: map, slotsPerRank: perRank, experts: experts)
    }
}

/// The collectives a standby group of a growing cluster runs before the commit, in this order on
/// every member: rank 0 broadcasts the ``StandbyPlan`` (``announce(group:plan:timeout:)``), and
/// the group joins its rows' transport (outside these collectives); each newcomer receives every
/// dense weight from one old rank (newcomer j from old rank (j − N) mod N, so any number of
/// newcomers works); each MoE layer's newcomer slots are filled from the slots that hold them;
/// last, the KV cache size is the minimum over the group. Weights go device to device where the
/// transport gives ``PeerMemory`` (the newcomer copies them from the old ranks' memory), in chunks
/// through the group's connections otherwise (``WeightChunks``, ``ExpertWeightExchange``).
public enum StandbyExchange {
    /// An existing rank's first part: rank 0 tells the newcomers the plan.
    public static func announce(group: StatelessGroup, plan: StandbyPlan, timeout: Duration) throws {
        _ = try group.broadcast(Array(try JSONEncoder().encode(plan)), root: 0, timeout: timeout)
    }

    /// An existing rank's second part, on its preparation's thread while its step loop serves:
    /// the rank's `dense` weights and `experts` (by decoder layer) are read through `copies`, or
    /// shared through `peer` where the newcomers copy them from this rank's memory.
    public static func asExisting(group: StatelessGroup, plan: StandbyPlan, dense: [Tensor], experts: [ExpertWeights?],
                                  copies: any TensorTransfers, blockCount: Int, timeout: Duration,
                                  peer: (any PeerMemory)? = nil) throws {
        for newcomer in plan.oldSize..<plan.size where (newcomer - plan.oldSize) % plan.oldSize == group.rank {
            if let peer {
                try WeightChunks.send(dense, to: newcomer, group: group, peer: peer, timeout: timeout)
                continue
            }
            for tensor in dense {
                try WeightChunks.send(tensor, to: newcomer, group: group, copies: copies, timeout: timeout)
            }
        }
        try exchangeExperts(group: group, plan: plan, experts: experts, copies: copies, timeout: timeout, peer: peer)
        _ = try group.allReduce([Int64(blockCount)], .min, timeout: timeout)
    }

    /// A newcomer's first part: the plan, before it can build its model.
    public static func receivePlan(group: StatelessGroup, timeout: Duration) throws -> StandbyPlan {
        try StandbyPlan(decoding: try group.broadcast([], root: 0, timeout: timeout), size: group.size)
    }

    /// A newcomer's second part, on its own thread before its step loop starts, into `model`
    /// (built with the plan's slots): weights, experts, and the agreed KV cache size in blocks.
    public static func asNewcomer(group: StatelessGroup, plan: StandbyPlan, model: CausalLM, backend: any Backend,
                                  blockCount: Int, timeout: Duration, peer: (any PeerMemory)? = nil) throws -> Int {
        let sender = (group.rank - plan.oldSize) % plan.oldSize
        if let peer {
            try WeightChunks.receive(into: model.denseWeights, from: sender, group: group, peer: peer, timeout: timeout)
        } else {
            for tensor in model.denseWeights {
                try WeightChunks.receive(into: tensor, from: sender, group: group, copies: backend, timeout: timeout)
            }
        }
        try exchangeExperts(group: group, plan: plan, experts: model.layers.map(\.experts), copies: backend, timeout: timeout,
                            peer: peer)
        return Int(try group.allReduce([Int64(blockCount)], .min, timeout: timeout)[0])
    }

    /// Old slots into newcomers' slots, which nothing reads yet: no staging, so either side's thread may run it.
    private static func exchangeExperts(group: StatelessGroup, plan: StandbyPlan, experts: [ExpertWeights?],
                                        copies: any TensorTransfers, timeout: Duration, peer: (any PeerMemory)?) throws {
        for (index, layer) in experts.enumerated() {
            guard let weights = layer else { continue }
            _ = try ExpertWeightExchange.run(plan.newcomerTransfers(layer: index), weights: weights, group: group,
                                             copies: copies, timeout: timeout, peer: peer)
        }
    }
}

/// An existing rank's preparation, on a thread of its own so that the step loop keeps serving:
/// forms the standby group, joins its rows' transport and, when the cluster grows, runs the
/// rank's part of ``StandbyExchange``. It reaches the device only through the transport's join
/// and a ``TransferStream``, never the rank's backend. The step loop polls ``outcome``;
/// ``cancel()`` ends the waits early.
final class StandbyPreparation: Sendable {
    enum Outcome {
        /// The standby group stands and its transport is joined.
        case ready(StatelessGroup)
        case failed(String)
    }

    private let state = Mutex<(outcome: Outcome?, cancelled: Bool, store: StoreClient?)>((nil, false, nil))
    /// The step loop's number for this preparation (what ``RankInbox/preparationSettled(_:)`` names).
    let id: Int

    /// - Parameters:
    ///   - transport: reserved by the step loop, which keeps it (and releases it, on its own
    ///     thread) until the outcome is set; joined here, and not held here after.
    ///   - copies: the backend's stream for this thread (the transport's join and the weights).
    ///   - announce: run first on the standby group (a growing group's plan for its newcomers).
    ///   - exchange: run once the transport is joined, with peer memory where the ranks reach
    ///     each other's (the newcomers' weights).
    ///   - done: called on the preparation's thread when the outcome is set.
    init(id: Int, generation: Int, rank: Int, size: Int, access: ClusterAccess, transport: any StandbyTransport,
         copies: any TransferStream, announce: (@Sendable (StatelessGroup) throws -> Void)?,
         exchange: (@Sendable (StatelessGroup, (any PeerMemory)?) throws -> Void)?, done: @escaping @Sendable () -> Void) {
        self.id = id
        let thread = Thread { [self, weak transport] in
            let outcome: Outcome
            do {
                try copies.attachCurrentThread()
                let store = try access.connect()
                let cancelled = state.withLock { state -> Bool in
                    state.store = store
                    return state.cancelled
                }
                if cancelled { store.close() }
                let group = try StatelessGroup(store: store, name: "world", generation: generation, rank: rank, size: size,
                                               host: access.host, timeout: access.prepareTimeout) { [self] in
                    state.withLock { $0.cancelled }
                }
                do {
                    try announce?(group)
                    guard let transport else { throw TransportError.refused("the preparation was abandoned") }
                    let reachesPeers = try transport.join(store: store, copies: copies)
                    try exchange?(group, reachesPeers ? copies.makePeerMemory() : nil)
                } catch {
                    group.close()
                    throw error
                }
                outcome = .ready(group)
            } catch {
                outcome = .failed("rank \(rank) could not prepare generation \(generation): \(error)")
            }
            let store = state.withLock { state -> StoreClient? in
                if case .ready(let group) = outcome, state.cancelled { group.close() }
                state.outcome = outcome
                return state.store
            }
            store?.close()
            done()
        }
        thread.name = "flexpert-standby-\(generation)"
        thread.start()
    }

    var outcome: Outcome? { state.withLock { $0.outcome } }

    /// Stops waiting for peers; a group already formed is closed.
    func cancel() {
        let (store, outcome) = state.withLock { state in
            state.cancelled = true
            return (state.store, state.outcome)
        }
        store?.close()
        if case .ready(let group)? = outcome { group.close() }
    }
}
