/// Tokens routed to each physical expert slot of each MoE layer over the last `capacity` steps,
/// as one rank saw them. Ranks add their windows together (an all-reduce) to get the global load.
///
/// Owned by the rank's step loop.
public struct ExpertLoadWindow: Sendable {
    public let capacity: Int
    public let width: Int
    private var steps: [[Int64]] = []
    private var next = 0
    public private(set) var totals: [Int64]

    /// - Parameter width: counters per step (MoE layers × slots per layer).
    public init(capacity: Int, width: Int) {
        precondition(capacity >= 1, "a window holds at least one step")
        self.capacity = capacity
        self.width = width
        totals = [Int64](repeating: 0, count: width)
    }

    /// Adds one step's counts, dropping the oldest step once the window is full.
    public mutating func record(_ counts: [Int64]) {
        precondition(counts.count == width, "a step's counts must cover every slot")
        if steps.count < capacity {
            steps.append(counts)
        } else {
            for index in 0..<width { totals[index] -= steps[next][index] }
            steps[next] = counts
            next = (next + 1) % capacity
        }
        for index in 0..<width { totals[index] += counts[index] }
    }

    /// Adds counts to the newest record (a read between two records' boundaries), or records
    /// them when the window is empty.
    public mutating func addToNewest(_ counts: [Int64]) {
        precondition(counts.count == width, "counts must cover every slot")
        guard !steps.isEmpty else { return record(counts) }
        let newest = steps.count < capacity ? steps.count - 1 : (next + capacity - 1) % capacity
        for index in 0..<width {
            steps[newest][index] += counts[index]
            totals[index] += counts[index]
        }
    }

    /// Forgets the counters in `columns` (a layer whose slots now hold other experts).
    public mutating func clear(_ columns: Range<Int>) {
        for step in steps.indices { for index in columns { steps[step][index] = 0 } }
        for index in columns { totals[index] = 0 }
    }

    /// Mean rank load over max rank load for each layer's `slots` counters (1 when idle), averaged
    /// over the layers: 1.0 is perfectly even.
    public static func balancedness(_ totals: [Int64], slotsPerLayer: Int, ranks: Int) -> Double {
        let layers = totals.count / slotsPerLayer, perRank = slotsPerLayer / ranks
        guard layers > 0 else { return 1 }
        var sum = 0.0
        for layer in 0..<layers {
            let loads = (0..<ranks).map { rank in
                totals[(layer * slotsPerLayer + rank * perRank)..<(layer * slotsPerLayer + (rank + 1) * perRank)].reduce(0, +)
            }
            let maximum = loads.max() ?? 0
            sum += maximum > 0 ? Double(loads.reduce(0, +)) / Double(ranks) / Double(maximum) : 1
        }
        return sum / Double(layers)
    }
}
