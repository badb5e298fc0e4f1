/// What the HTTP side needs of elastic scaling (the cluster's controller provides it).
public protocol ElasticScaling: Sendable {
    /// Runs a reconfiguration to `size` ranks and returns once it served at that size or failed.
    func scale(to size: Int) async -> ScaleOutcome
    var status: ScaleStatus { get }
}

public enum ScaleOutcome: Sendable, Equatable {
    case scaled(operationID: String, message: String, timings: [String: Double])
    /// The size is out of range (400).
    case invalid(String)
    /// Another reconfiguration runs (409).
    case busy(String)
    /// Rolled back or broken (500).
    case failed(operationID: String, reason: String)
}

/// `GET /elastic_ep/status`.
public struct ScaleStatus: Sendable, Equatable {
    public enum Phase: String, Sendable {
        /// `recovering`: a member was lost and the survivors form a new group (requests wait).
        case idle, preparing, committing, rollingBack = "rolling_back", recovering, failed
    }

    public var operationID: String?
    public var phase: Phase
    public var currentSize: Int
    public var targetSize: Int?
    /// Seconds since 1970.
    public var startedAt: Double?
    public var lastError: String?
    /// Seconds each part of the last (or running) operation took.
    public var timings: [String: Double]
    /// The autoscaler's bounds and decisions, when it runs.
    public var autoscale: AutoscaleStatus?
    /// Ranks lost and recoveries so far, when the cluster heals itself.
    public var recovery: RecoveryStatus?

    public init(operationID: String? = nil, phase: Phase, currentSize: Int, targetSize: Int? = nil, startedAt: Double? = nil,
                lastError: String? = nil, timings: [String: Double] = [:]) {
        self.operationID = operationID
        self.phase = phase
        self.currentSize = currentSize
        self.targetSize = targetSize
        self.startedAt = startedAt
        self.lastError = lastError
        self.timings = timings
    }

    public var isScaling: Bool { phase == .preparing || phase == .committing || phase == .rollingBack }
}

/// What `--elastic-ep-autoscale` has decided so far.
public struct AutoscaleStatus: Sendable, Equatable {
    public var minSize: Int
    public var maxSize: Int
    public var scaleUps = 0
    public var scaleDowns = 0
    /// The last decision: its sizes and reason.
    public var lastDecision: String?
    /// Seconds since 1970.
    public var lastDecisionAt: Double?

    public init(minSize: Int, maxSize: Int) {
        self.minSize = minSize
        self.maxSize = maxSize
    }
}

/// What the cluster has healed from so far (`--enable-elastic-ep` heals a lost rank).
public struct RecoveryStatus: Sendable, Equatable {
    /// Members lost (their process ended, their connection broke, or heartbeats went unanswered).
    public var rankFailures = 0
    /// Recoveries completed, and the seconds they took from the loss to the group serving again.
    public var recoveries = 0
    public var recoverySeconds = 0.0
    public var lastRecoverySeconds: Double?
    /// The last loss: which ranks and why, and how it ended.
    public var lastEvent: String?

    public init() {}
}
