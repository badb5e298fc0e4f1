/// A model's expert as its router numbers them: 0 ..< the layer's logical expert count. Several
/// physical slots may hold copies (replicas) of one logical expert.
public struct LogicalExpert: Hashable, Comparable, Sendable, Codable, ExpressibleByIntegerLiteral, CustomStringConvertible {
    public let index: Int

    public init(_ index: Int) { self.index = index }
    public init(integerLiteral index: Int) { self.index = index }

    public init(from decoder: any Decoder) throws { index = try decoder.singleValueContainer().decode(Int.self) }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(index)
    }

    public static func < (left: Self, right: Self) -> Bool { left.index < right.index }
    public var description: String { "\(index)" }
}

/// A place for one copy of an expert's weights in a layer: slot `p` lies on rank
/// `p / slotsPerRank`, at row `p % slotsPerRank` of that rank's expert tensors.
public struct PhysicalSlot: Hashable, Comparable, Sendable, Codable, ExpressibleByIntegerLiteral, CustomStringConvertible {
    public let index: Int

    public init(_ index: Int) { self.index = index }
    public init(integerLiteral index: Int) { self.index = index }

    public init(from decoder: any Decoder) throws { index = try decoder.singleValueContainer().decode(Int.self) }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(index)
    }

    public static func < (left: Self, right: Self) -> Bool { left.index < right.index }
    public var description: String { "\(index)" }
}
