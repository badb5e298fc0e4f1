/// Where a rank runs (`--device`).
public enum DeviceKind: String, Codable, Sendable, CaseIterable {
    case cpu
    case cuda
}

/// `--all2all-backend`: what moves a MoE layer's rows between ranks.
public enum All2AllBackend: String, Codable, Sendable, CaseIterable {
    /// Peer memory between CUDA ranks (NCCL where a rank cannot reach another's memory: another
    /// host, no peer access), host staging between CPU ranks.
    case auto
    /// The whole MoE layer on the GPUs, rows written into each other's memory through CUDA IPC
    /// (ranks of one host: sharing a GPU, or on GPUs with peer access); steps replay as graphs.
    case ipc
    /// GPU to GPU through NCCL, the host planning each layer's rows (one GPU per rank, any host).
    case nccl
    /// Through host memory and the group's TCP connections (any device; ranks may share a GPU).
    case host

    public func resolved(for device: DeviceKind) -> All2AllBackend {
        self != .auto ? self : device == .cuda ? .ipc : .host
    }
}

/// What every rank of a cluster needs to start, published by the coordinator in its store under
/// ``storeKey`` as JSON, so that `flexpert engine` needs nothing but the coordinator's address
/// and the join token.
public struct RankConfiguration: Codable, Sendable, Equatable {
    public static let storeKey = "cluster/configuration"
    public static let joinedKey = "cluster/joined"

    /// Ranks in the expert-parallel group.
    public var size: Int
    /// Extra expert slots per layer holding copies of experts (EPLB's redundant experts).
    public var redundantExperts: Int
    /// Steps of expert load kept, and how often the balancedness is computed and logged.
    public var eplbWindowSize: Int
    public var eplbLogInterval: Int
    /// Steps between rebalances (`nil`: EPLB off, the placement stays), and layers moved per step.
    public var eplbStepInterval: Int?
    public var eplbLayersPerStep: Int
    /// The checkpoint folder, as the ranks see it.
    public var model: String
    public var loadFormat: LoadFormat
    public var device: DeviceKind
    public var blockSize: Int
    public var maxBatchedTokens: Int
    public var maxSequences: Int
    public var maxModelLength: Int
    public var kvCacheMemoryBytes: Int?
    /// `--gpu-memory-utilization`, where no byte count is given.
    public var gpuMemoryUtilization: Double
    /// Threads of each CPU rank (`nil`: every core of its machine).
    public var cpuThreads: Int?
    /// Where ranks connect to the front end, `HOST:PORT`.
    public var frontEnd: String
    /// How long a collective may take before the group counts as broken.
    public var collectiveTimeoutSeconds: Double
    /// How long preparing a reconfiguration may take before it rolls back.
    public var prepareTimeoutSeconds: Double
    /// What moves MoE rows between ranks (`--all2all-backend`).
    public var all2allBackend: All2AllBackend
    /// Whether the front end heals the group when a member is lost (elastic EP): a rank whose
    /// group breaks then keeps its requests and waits for the recovery instead of ending.
    public var healsLostRanks: Bool
    /// Automatic prefix caching on each rank (`--enable-prefix-caching`).
    public var cachesPrefixes: Bool

    public init(size: Int, redundantExperts: Int, eplbWindowSize: Int, eplbLogInterval: Int,
                eplbStepInterval: Int?, eplbLayersPerStep: Int, model: String, loadFormat: LoadFormat, device: DeviceKind, blockSize: Int,
                maxBatchedTokens: Int,
                maxSequences: Int, maxModelLength: Int, kvCacheMemoryBytes: Int?, gpuMemoryUtilization: Double, cpuThreads: Int?,
                frontEnd: String, collectiveTimeoutSeconds: Double, prepareTimeoutSeconds: Double = 120,
                all2allBackend: All2AllBackend = .auto, healsLostRanks: Bool = false, cachesPrefixes: Bool = true) {
        self.size = size
        self.redundantExperts = redundantExperts
        self.eplbWindowSize = eplbWindowSize
        self.eplbLogInterval = eplbLogInterval
        self.eplbStepInterval = eplbStepInterval
        self.eplbLayersPerStep = eplbLayersPerStep
        self.model = model
        self.loadFormat = loadFormat
        self.device = device
        self.blockSize = blockSize
        self.maxBatchedTokens = maxBatchedTokens
        self.maxSequences = maxSequences
        self.maxModelLength = maxModelLength
        self.kvCacheMemoryBytes = kvCacheMemoryBytes
        self.gpuMemoryUtilization = gpuMemoryUtilization
        self.cpuThreads = cpuThreads
        self.frontEnd = frontEnd
        self.collectiveTimeoutSeconds = collectiveTimeoutSeconds
        self.prepareTimeoutSeconds = prepareTimeoutSeconds
        self.all2allBackend = all2allBackend
        self.healsLostRanks = healsLostRanks
        self.cachesPrefixes = cachesPrefixes
    }
}
