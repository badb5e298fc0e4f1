/// What the front end tells every rank to do in a reconfiguration. A rank does not act on a
/// command when it arrives but at the first step boundary where every rank of its group has
/// received it (their step headers say so), so all ranks act at the same step.
public struct ControlCommand: Sendable, Equatable {
    public enum Action: Sendable, Equatable {
        /// Get ready to serve with `size` ranks in group `generation`, while serving continues.
        case prepare(size: Int)
        /// Switch to the prepared group now; ranks at or above its size leave.
        case commit
        /// Drop what was prepared; serving continues as before.
        case abandon
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

/// Published by the front end under `storeKey(generation)` before it starts new ranks: the
/// size the cluster grows to and the rank the first newcomer takes.
public struct JoinInvitation: Codable, Sendable, Equatable {
    public var generation: Int
    public var size: Int
    public var firstNewRank: Int
    /// The id of the `prepare` command the existing ranks got (newcomers count commands from it).
    public var prepareCommandID: Int

    public init(generation: Int, size: Int, firstNewRank: Int, prepareCommandID: Int) {
        self.generation = generation
        self.size = size
        self.firstNewRank = firstNewRank
        self.prepareCommandID = prepareCommandID
    }

    public static func storeKey(_ generation: Int) -> String { "cluster/join/\(generation)" }
    public static func joinedKey(_ generation: Int) -> String { "cluster/joined/\(generation)" }
}

extension ByteWriter {
    mutating func command(_ command: ControlCommand) {
        i64(Int64(command.id))
        i64(Int64(command.generation))
        switch command.action {
        case .prepare(let size):
            u8(1)
            i64(Int64(size))
        case .commit: u8(2)
        case .abandon: u8(3)
        }
    }

    mutating func report(_ report: ReconfigurationReport) {
        switch report {
        case .prepared(let generation):
            u8(1)
            i64(Int64(generation))
        case .switched(let generation):
            u8(2)
            i64(Int64(generation))
        case .failed(let generation, let reason):
            u8(3)
            i64(Int64(generation))
            string(reason)
        case .lost(let reason):
            u8(4)
            string(reason)
        }
    }
}

extension ByteReader {
    mutating func command() throws -> ControlCommand {
        let id = Int(try i64()), generation = Int(try i64())
        switch try u8() {
        case 1: return ControlCommand(id: id, generation: generation, action: .prepare(size: Int(try i64())))
        case 2: return ControlCommand(id: id, generation: generation, action: .commit)
        case 3: return ControlCommand(id: id, generation: generation, action: .abandon)
        default: throw MalformedMessage("unknown control command")
        }
    }

    mutating func report() throws -> ReconfigurationReport {
        switch try u8() {
        case 1: return .prepared(generation: Int(try i64()))
        case 2: return .switched(generation: Int(try i64()))
        case 3: return .failed(generation: Int(try i64()), reason: try string())
        case 4: return .lost(reason: try string())
        default: throw MalformedMessage("unknown reconfiguration report")
        }
    }
}
