public import Elastic

/// Published by the front end under `storeKey(generation)` before it starts new ranks: the very
/// prepare command the current ranks get (so the size of a reconfiguration reaches every rank, old
/// and new, in that one message), and the rank the first newcomer takes.
public struct JoinInvitation: Sendable, Equatable {
    public let prepare: ControlCommand
    /// The size the cluster grows to: the prepare's.
    public let size: Int
    public let firstNewRank: RankID

    public init(prepare: ControlCommand, firstNewRank: RankID) throws {
        guard case .prepare(let size) = prepare.action, firstNewRank.index < size else {
            throw MalformedMessage("an invitation to rank \(firstNewRank) with \(prepare.action)")
        }
        self.prepare = prepare
        self.size = size
        self.firstNewRank = firstNewRank
    }

    public var generation: Int { prepare.generation }

    public func encoded() -> [UInt8] {
        var writer = ByteWriter()
        writer.command(prepare)
        writer.i64(Int64(firstNewRank.index))
        return writer.bytes
    }

    public init(decoding bytes: [UInt8]) throws {
        var reader = ByteReader(bytes)
        let prepare = try reader.command(), firstNewRank = RankID(Int(try reader.i64()))
        guard reader.isAtEnd else { throw MalformedMessage("an invitation of \(bytes.count) bytes") }
        try self.init(prepare: prepare, firstNewRank: firstNewRank)
    }

    public static func storeKey(_ generation: Int) -> String { "cluster/join/\(generation)" }
    public static func joinedKey(_ generation: Int) -> String { "cluster/joined/\(generation)" }
}
