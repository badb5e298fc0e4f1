/// A rank of the cluster: its place in the group, 0 ..< the group's size. Ranks of a scale are
/// ranges of these (`from ..< to`, the newcomers of a scale-up).
public struct RankID: Hashable, Comparable, Strideable, Sendable, CustomStringConvertible, ExpressibleByIntegerLiteral {
    public let index: Int

    public init(_ index: Int) { self.index = index }

    public init(integerLiteral index: Int) { self.index = index }

    public var description: String { "\(index)" }

    public static func < (lhs: RankID, rhs: RankID) -> Bool { lhs.index < rhs.index }

    public func distance(to other: RankID) -> Int { other.index - index }

    public func advanced(by count: Int) -> RankID { RankID(index + count) }
}

extension Range where Bound == RankID {
    /// The ranks `lower ..< upper`.
    public init(ranks lower: Int, _ upper: Int) { self = RankID(lower)..<RankID(upper) }
}
