/// What the front end tells every rank to do in a reconfiguration. A rank does not act on a
/// command when it arrives but at the first step boundary where every rank of its group has
/// received it (their step headers say so), so all ranks act at the same step; `recover` is the
/// exception, since the group it follows is broken.
public struct ControlCommand: Sendable, Equatable {
    public enum Action: Sendable, Equatable {
        /// Get ready to serve with `size` ranks in group `generation`, while serving continues.
        case prepare(size: Int)
        /// Switch to the prepared group now; ranks at or above its size leave.
        case commit
        /// Drop what was prepared; serving continues as before.
        case abandon
        /// A member is gone: this rank, as rank `rank` of the `size` survivors, forms group
        /// `generation` with them now, without waiting for a step boundary, restores the experts
        /// only the lost held, and steps again from `round` (past every wake sent so far). Each
        /// survivor gets its own: a rank need not know how the front end numbered the others.
        case recover(rank: RankID, size: Int, round: Int)
    }

    /// Increases with every command the front end sends, across reconfigurations.
    public let id: Int
    public let generation: Int
    public let action: Action

    public init(id: Int, generation: Int, action: Action) {
        self.id = id
        self.generation = generation
        self.action = action
    }
}

extension ControlCommand {
    public var isPrepare: Bool {
        if case .prepare = action { return true }
        return false
    }

    public var isRecovery: Bool {
        if case .recover = action { return true }
        return false
    }
}
