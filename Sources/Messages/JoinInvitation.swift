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
