/// The dimensions of a tensor, outermost first, at most four.
///
/// Stored inline rather than as an array so that making a shape in the step loop never allocates.
public struct Shape: Equatable, Hashable, Sendable, CustomStringConvertible {
    public let rank: Int
    private let d0: Int, d1: Int, d2: Int, d3: Int

    // Fixed-arity initialisers: a variadic one would build an array on every call in the step loop.
    public init(_ d0: Int) { self.init(rank: 1, d0, 1, 1, 1) }
    public init(_ d0: Int, _ d1: Int) { self.init(rank: 2, d0, d1, 1, 1) }
    public init(_ d0: Int, _ d1: Int, _ d2: Int) { self.init(rank: 3, d0, d1, d2, 1) }
    public init(_ d0: Int, _ d1: Int, _ d2: Int, _ d3: Int) { self.init(rank: 4, d0, d1, d2, d3) }

    private init(rank: Int, _ d0: Int, _ d1: Int, _ d2: Int, _ d3: Int) {
        precondition(d0 >= 0 && d1 >= 0 && d2 >= 0 && d3 >= 0, "negative dimension in \([d0, d1, d2, d3].prefix(rank))")
        self.rank = rank
        self.d0 = d0
        self.d1 = d1
        self.d2 = d2
        self.d3 = d3
    }

    public init(_ dimensions: [Int]) {
        precondition(dimensions.count <= 4, "Shape supports at most 4 dimensions, got \(dimensions)")
        precondition(dimensions.allSatisfy { $0 >= 0 }, "negative dimension in \(dimensions)")
        rank = dimensions.count
        d0 = dimensions.count > 0 ? dimensions[0] : 1
        d1 = dimensions.count > 1 ? dimensions[1] : 1
        d2 = dimensions.count > 2 ? dimensions[2] : 1
        d3 = dimensions.count > 3 ? dimensions[3] : 1
    }

    public subscript(index: Int) -> Int {
        precondition(index >= 0 && index < rank, "dimension \(index) out of range for rank \(rank)")
        switch index {
        case 0: return d0
        case 1: return d1
        case 2: return d2
        default: return d3
        }
    }

    /// The same shape with another outermost dimension.
    public func replacingFirst(with count: Int) -> Shape {
        Shape(rank: max(rank, 1), count, d1, d2, d3)
    }

    public var elementCount: Int { rank == 0 ? 1 : d0 * d1 * d2 * d3 }

    /// Bytes of a tensor of this shape, or `nil` when that does not fit in an `Int` (a broken configuration).
    public func byteCount(of dtype: DType) -> Int? {
        var product = dtype.byteCount
        for dimension in [d0, d1, d2, d3] {
            let (next, overflow) = product.multipliedReportingOverflow(by: dimension)
            guard !overflow else { return nil }
            product = next
        }
        return product
    }

    /// Product of every dimension but the first: the width of a row.
    public var rowWidth: Int { rank <= 1 ? 1 : elementCount / d0 }

    public var dimensions: [Int] { (0..<rank).map { self[$0] } }

    public var description: String { "[" + dimensions.map(String.init).joined(separator: ", ") + "]" }
}
