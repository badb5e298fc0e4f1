/// What a rank tells the front end about a reconfiguration.
public enum ReconfigurationReport: Sendable, Equatable {
    /// Ready to commit to `generation`.
    case prepared(generation: Int)
    /// Serving in group `generation` (or, for a leaving rank, gone from the cluster).
    case switched(generation: Int)
    /// Could not prepare; the front end rolls back.
    case failed(generation: Int, reason: String)
    /// The rank is gone (its process ended or its connection broke): whatever runs fails.
    case lost(reason: String)
}
