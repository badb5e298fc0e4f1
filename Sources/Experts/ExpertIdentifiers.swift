/// An id that is an index (a logical expert, a physical slot): written as its integer in JSON and
/// in messages, ordered by it, and spelled as a literal in tests and plans.
public protocol IndexIdentifier: Hashable, Comparable, Sendable, Codable, ExpressibleByIntegerLiteral, CustomStringConvertible {
    var index: Int { get }
    init(_ index: Int)
}

extension IndexIdentifier {
    public init(integerLiteral index: Int) { self.init(index) }
    public init(from decoder: any Decoder) throws { self.init(try decoder.singleValueContainer().decode(Int.self)) }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(index)
    }

    public static func < (left: Self, right: Self) -> Bool { left.index < right.index }
    public var description: String { "\(index)" }
}

/// A model's expert as its router numbers them: 0 ..< the layer's logical expert count. Several
/// physical slots may hold copies (replicas) of one logical expert.
public struct LogicalExpert: IndexIdentifier {
    public let index: Int
    public init(_ index: Int) { self.index = index }
}

/// A place for one copy of an expert's weights in a layer: slot `p` lies on rank
/// `p / slotsPerRank`, at row `p % slotsPerRank` of that rank's expert tensors.
public struct PhysicalSlot: IndexIdentifier {
    public let index: Int
    public init(_ index: Int) { self.index = index }
}
