/// A rank's side of a reconfiguration, from its prepare to its commit or abandon: what each
/// control command means on this rank, and when to tell the front end that its part is done.
/// Pure: ``RankLoop`` carries out the actions (plans the placement, runs the preparation, switches
/// its dispatch) and tells it how the preparation ended.
///
/// A rank that stays (below the new size) prepares a standby group; one that leaves prepares
/// nothing. A rank's part is done when its preparation has ended (or it has none) and no experts
/// move anymore (a scale-down first moves them off the leaving ranks): then it reports `prepared`,
/// or `failed` with its preparation's reason, once.
public struct RankReconfiguration: Sendable, Equatable {
    /// How this rank's preparation (the standby group, its transport, the newcomers' weights) ended.
    public enum PreparationOutcome: Sendable, Equatable {
        case ready
        case failed(String)
    }

    public enum Action: Sendable, Equatable {
        /// Plan the placement for `size` ranks and pause EPLB (shrinking: move experts off the
        /// leaving ranks); with `prepares`, start this rank's preparation of the standby group.
        case prepare(generation: Int, size: Int, prepares: Bool)
        /// Serve in the prepared standby group from this step on, and report `switched`.
        case switchGroups(generation: Int)
        /// This rank is past the new size: report `switched` and leave the cluster.
        case leave(generation: Int)
        /// Drop what was prepared (cancel a running preparation) and resume EPLB.
        case abandon(generation: Int)
    }

    /// The reconfiguration between its prepare and its commit or abandon.
    public struct Pending: Sendable, Equatable {
        public let generation: Int
        public let size: Int
        /// Whether this rank prepares a standby group (it stays).
        public let prepares: Bool
        public var outcome: PreparationOutcome?
        public var isReported = false
    }

    /// A command that cannot be carried out in this state: the front end and the rank disagree.
    public struct Violation: Error, CustomStringConvertible, Equatable {
        public let detail: String
        public var description: String { "protocol violation: \(detail)" }
    }

    public let rank: RankID
    public private(set) var pending: Pending?

    public init(rank: RankID) { self.rank = rank }

    /// What `command` means on this rank, at the step boundary every rank agreed on.
    /// - Parameters:
    ///   - servingGeneration: the generation of the group this rank serves in.
    ///   - isMovingExperts: whether EPLB is moving experts (a commit must come after the moves).
    public mutating func carryOut(_ command: ControlCommand, servingGeneration: Int, isMovingExperts: Bool) throws -> Action? {
        switch command.action {
        case .prepare(let size):
            guard pending == nil else { throw Violation(detail: "prepare of generation \(command.generation) while another runs") }
            pending = Pending(generation: command.generation, size: size, prepares: rank.index < size)
            return .prepare(generation: command.generation, size: size, prepares: rank.index < size)
        case .commit:
            // A commit this rank already carried out (it joined after the prepare) changes nothing.
            if pending == nil && command.generation <= servingGeneration { return nil }
            guard let current = pending, current.generation == command.generation, !isMovingExperts else {
                throw Violation(detail: "commit of generation \(command.generation) before it was prepared")
            }
            guard current.prepares else {
                pending = nil
                return .leave(generation: current.generation)
            }
            guard current.outcome == .ready else {
                throw Violation(detail: "commit of generation \(command.generation) without a standby group")
            }
            pending = nil
            return .switchGroups(generation: current.generation)
        case .recover:
            throw Violation(detail: "recovery to generation \(command.generation) is carried out on arrival, not at a step boundary")
        case .abandon:
            guard pending?.generation == command.generation else { return nil }
            pending = nil
            return .abandon(generation: command.generation)
        }
    }

    /// The preparation of `generation` ended (one of an abandoned reconfiguration changes nothing).
    public mutating func preparationEnded(_ outcome: PreparationOutcome, generation: Int) {
        guard pending?.generation == generation, pending?.outcome == nil else { return }
        pending?.outcome = outcome
    }

    /// This rank's report, once, when its part is done.
    public mutating func report(isMovingExperts: Bool) -> ReconfigurationReport? {
        guard var current = pending, !current.isReported, !isMovingExperts else { return nil }
        let report: ReconfigurationReport
        switch current.outcome {
        case nil where current.prepares: return nil
        case .failed(let reason)?: report = .failed(generation: current.generation, reason: reason)
        default: report = .prepared(generation: current.generation)
        }
        current.isReported = true
        pending = current
        return report
    }
}
