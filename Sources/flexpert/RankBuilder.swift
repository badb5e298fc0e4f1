import Checkpoint
import Compute
import ComputeCUDA
import Engine
import Experts
import Foundation
import Messages
import Models
import Parallelism
import Scheduling
import Transport

/// Builds one rank's engine: the backend, the model (all experts, or this rank's slots), the KV
/// cache, and under expert parallelism the group and the dispatch. `serve` (one rank in its own
/// process) and `engine` (a rank of a cluster) both start here.
enum RankBuilder {
    struct Settings {
        let model: String
        let loadFormat: LoadFormat
        let device: DeviceKind
        let blockSize: Int
        let maxBatchedTokens: Int
        let maxSequences: Int
        /// `nil`: the model's positions.
        let maxModelLength: Int?
        let kvCacheMemory: KVCacheMemory
        /// Threads of a CPU rank (`nil`: every core).
        var cpuThreads: Int? = nil
        var all2allBackend: All2AllBackend = .auto
        var cachesPrefixes = true

        /// The scheduler's limits for `model` (its positions when no length is given).
        func schedulerConfiguration(for model: ModelConfiguration) -> SchedulerConfiguration {
            SchedulerConfiguration(maxBatchedTokens: maxBatchedTokens, maxSequences: maxSequences,
                                   maxModelLength: maxModelLength ?? model.decoder.maxPositionCount, cachesPrefixes: cachesPrefixes)
        }
    }

    /// Where this rank sits in an expert-parallel group.
    struct Membership {
        let store: StoreClient
        let rank: Int
        let size: Int
        let redundantExperts: Int
        let host: String
        let collectiveTimeout: Duration
    }

    static func build(_ settings: Settings, membership: Membership?)
        throws -> (core: EngineCore, group: StatelessGroup?, dispatch: ExpertParallelDispatch?) {
        let configuration = try ModelConfiguration(folder: settings.model)
        let source = try Self.weights(settings)
        let backend = try settings.device.makeBackend(cpuThreads: settings.cpuThreads, rank: membership?.rank ?? 0)
        var placement: ExpertPlacement?
        if let membership {
            placement = try ExpertPlacement.initial(logicalExperts: configuration.moe.expertCount, ranks: membership.size,
                                                    redundantExperts: membership.redundantExperts)
        }
        let model = try CausalLM.load(configuration, from: source, on: backend,
                                      expertSelection: placement.map { Array($0.logicalExperts(onRank: membership!.rank)) })
        // The transport first: its buffers are memory the KV cache must leave free. The padding
        // slot is known once the cache is sized.
        var group: StatelessGroup?
        var joined: ExpertTransport?
        if let membership, let placement {
            group = try StatelessGroup(store: membership.store, name: "world", generation: 0, rank: membership.rank,
                                       size: membership.size, host: membership.host)
            joined = try transport(settings, model: model, backend: backend, store: membership.store, generation: 0,
                                   rank: membership.rank, size: membership.size, slotsPerRank: placement.slotsPerRank,
                                   timeout: membership.collectiveTimeout, joinTimeout: Self.startTimeout)
        }
        let placements = model.layers.map { layer -> ExpertPlacement? in
            if case .sparse = layer.feedForward { return placement }
            return nil
        }
        var expertParallel: ExpertParallelism?
        if let group, let joined, let membership {
            expertParallel = ExpertParallelism(group: group, transport: joined, placements: placements, timeout: membership.collectiveTimeout)
        }
        if expertParallel == nil {
            try EngineCore.reserveStepMemory(model: model, backend: backend, configuration: settings.schedulerConfiguration(for: configuration),
                                             blockSize: settings.blockSize)
        }
        let (core, dispatch) = try engine(settings, model: model, backend: backend,
                                          blockCount: try Self.blockCount(settings, model: model, backend: backend),
                                          expertParallel: expertParallel)
        try core.warmUp()
        return (core, group, dispatch)
    }

    /// What an expert-parallel rank's dispatch is made of.
    struct ExpertParallelism {
        let group: StatelessGroup
        let transport: ExpertTransport
        let placements: [ExpertPlacement?]
        /// How long an exchange waits for a peer (`--collective-timeout`).
        let timeout: Duration
    }

    /// The engine of a rank whose model is loaded and whose transport is joined (one place for
    /// every rank, founding or newcomer): its KV cache of `blockCount` blocks, then, with
    /// `expertParallel`, its dispatch.
    private static func engine(_ settings: Settings, model: CausalLM, backend: any Backend, blockCount: Int,
                               expertParallel: ExpertParallelism?) throws -> (EngineCore, ExpertParallelDispatch?) {
        let cache = try KVCache(model: model, blockSize: settings.blockSize, blockCount: blockCount, backend: backend)
        var dispatch: ExpertParallelDispatch?
        if let expertParallel {
            (expertParallel.transport.exchange as? PeerMemoryExchange)?.paddingSlot = cache.paddingSlot
            dispatch = try ExpertParallelDispatch(group: expertParallel.group, placements: expertParallel.placements,
                                                  timeout: expertParallel.timeout, transport: expertParallel.transport)
        }
        let core = try EngineCore(model: model, backend: backend, cache: cache,
                                  configuration: settings.schedulerConfiguration(for: model.configuration), expertDispatch: dispatch)
        return (core, dispatch)
    }

    /// Where the weights come from: the checkpoint's files, or seeded values (`--load-format dummy`).
    static func weights(_ settings: Settings) throws -> any WeightSource {
        switch settings.loadFormat {
        case .auto: try WeightFiles(folder: settings.model)
        case .dummy: DummyWeights(seed: 0)
        }
    }

    /// The KV cache blocks this rank can hold, by `--kv-cache-memory-bytes` or `--gpu-memory-utilization`.
    private static func blockCount(_ settings: Settings, model: CausalLM, backend: any Backend) throws -> Int {
        try settings.kvCacheMemory.blockCount(model: model, backend: backend, blockSize: settings.blockSize, maxSequences: settings.maxSequences,
                                              maxModelLength: settings.maxModelLength ?? model.configuration.decoder.maxPositionCount)
    }

    /// A newcomer of a growing cluster: forms the standby group, learns the plan from rank 0, builds
    /// its model with no weights read, receives the weights from its peers, and sizes its KV cache
    /// to the group's minimum.
    static func buildNewcomer(_ settings: Settings, membership: Membership, generation: Int, prepareTimeout: Duration)
        throws -> (core: EngineCore, group: StatelessGroup, dispatch: ExpertParallelDispatch, plan: StandbyPlan) {
        let configuration = try ModelConfiguration(folder: settings.model)
        let source = try Self.weights(settings)
        let backend = try settings.device.makeBackend(cpuThreads: settings.cpuThreads, rank: membership.rank)
        let group = try StatelessGroup(store: membership.store, name: "world", generation: generation, rank: membership.rank,
                                       size: membership.size, host: membership.host, timeout: prepareTimeout)
        let plan = try StandbyExchange.receivePlan(group: group, timeout: prepareTimeout)
        let experts = configuration.moe.expertCount
        let model = try CausalLM.load(configuration, from: StructureOnlyWeights(source), on: backend,
                                      expertSelection: (0..<plan.slotsPerRank()).map { LogicalExpert($0 % experts) })
        // The transport first: where it gives peer memory, the weights come through it, and its
        // buffers are memory the KV cache must leave free. The padding slot is known once the
        // group has agreed on the cache's size.
        let joined = try transport(settings, model: model, backend: backend,
                                   store: membership.store, generation: generation, rank: membership.rank, size: membership.size,
                                   slotsPerRank: plan.slotsPerRank(), timeout: membership.collectiveTimeout,
                                   joinTimeout: prepareTimeout)
        let ownBlocks = try Self.blockCount(settings, model: model, backend: backend)
        let blockCount = try StandbyExchange.asNewcomer(group: group, plan: plan, model: model, backend: backend,
                                                        blockCount: ownBlocks, timeout: prepareTimeout,
                                                        peer: joined.exchange?.peerMemory)
        let (core, made) = try engine(settings, model: model, backend: backend, blockCount: blockCount,
                                      expertParallel: ExpertParallelism(group: group, transport: joined,
                                                                        placements: try plan.intermediatePlacements(),
                                                                        timeout: membership.collectiveTimeout))
        guard let dispatch = made else { preconditionFailure("an expert-parallel engine has a dispatch") }
        return (core, group, dispatch, plan)
    }

    /// How long the ranks starting together wait for each other's transport (a large model loads for minutes).
    static let startTimeout = Duration.seconds(600)

    /// The rows' transport of a rank of `generation`, reserved and joined on this thread.
    private static func transport(_ settings: Settings, model: CausalLM, backend: any Backend, store: StoreClient, generation: Int,
                                  rank: Int, size: Int, slotsPerRank: Int, timeout: Duration, joinTimeout: Duration) throws -> ExpertTransport {
        let transport = try RankTransport(settings, model: model, paddingSlot: 0, backend: backend, generation: generation, rank: rank,
                                          size: size, slotsPerRank: slotsPerRank, timeout: timeout, joinTimeout: joinTimeout)
        _ = try transport.join(store: store, copies: backend)
        return transport.transport()
    }
}

extension KVCache {
    /// The slot padding tokens write: the first of the last block, which the engine keeps for them.
    var paddingSlot: Int { (blockCount - 1) * blockSize }
}
