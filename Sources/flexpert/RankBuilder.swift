import Checkpoint
import Cluster
import Compute
import Distributed
import Engine
import Models
import Parallelism
import Scheduling

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
        let source: any WeightSource = switch settings.loadFormat {
        case .auto: try WeightFiles(folder: settings.model)
        case .dummy: DummyWeights(seed: 0)
        }
        let backend = try settings.device.makeBackend(cpuThreads: settings.cpuThreads)
        var placement: ExpertPlacement?
        if let membership {
            placement = try ExpertPlacement.initial(logicalExperts: configuration.moe.expertCount, ranks: membership.size,
                                                    redundantExperts: membership.redundantExperts)
        }
        let model = try CausalLM.load(configuration, from: source, on: backend,
                                      expertSelection: placement.map { Array($0.logicalExperts(onRank: membership!.rank)) })
        let length = settings.maxModelLength ?? configuration.decoder.maxPositionCount
        let blockCount = try settings.kvCacheMemory.blockCount(model: model, backend: backend, blockSize: settings.blockSize,
                                                               maxSequences: settings.maxSequences, maxModelLength: length)
        let cache = try KVCache(model: model, blockSize: settings.blockSize, blockCount: blockCount, backend: backend)
        var group: StatelessGroup?
        var dispatch: ExpertParallelDispatch?
        if let membership, let placement, membership.size > 1 {
            let formed = try StatelessGroup(store: membership.store, name: "world", generation: 0, rank: membership.rank,
                                            size: membership.size, host: membership.host)
            let placements = model.layers.map { layer -> ExpertPlacement? in
                if case .sparse = layer.feedForward { return placement }
                return nil
            }
            dispatch = ExpertParallelDispatch(group: formed, placements: placements, timeout: membership.collectiveTimeout)
            group = formed
        }
        let core = try EngineCore(model: model, backend: backend, cache: cache, configuration: SchedulerConfiguration(
            maxBatchedTokens: settings.maxBatchedTokens, maxSequences: settings.maxSequences, maxModelLength: length),
            expertDispatch: dispatch)
        return (core, group, dispatch)
    }
}
