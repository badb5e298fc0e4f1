/// What a rank tells the front end about a reconfiguration.
public enum ReconfigurationReport: Sendable, Equatable {
    /// Ready to commit to `generation`.
    case prepared(generation: Int)
    /// Serving in group `generation` (or, for a leaving rank, gone from the cluster; or
    /// recovered into it).
    case switched(generation: Int)
    /// Could not prepare (the front end rolls back), or could not recover.
    case failed(generation: Int, reason: String)
    /// The rank is gone (its process ended or its connection broke): whatever runs fails.
    case lost(reason: String)
    /// The rank's group `generation` broke (a collective failed: a member is lost or cut off);
    /// it keeps its requests and waits for a recovery.
    case broken(generation: Int, reason: String)
}
