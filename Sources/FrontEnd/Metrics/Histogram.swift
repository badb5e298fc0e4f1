/// A Prometheus histogram: cumulative buckets by upper bound, a sum and a count.
public struct Histogram: Sendable {
    public let bounds: [Double]
    private(set) var counts: [Int]
    private(set) var sum = 0.0
    private(set) var count = 0

    public init(bounds: [Double]) {
        precondition(bounds == bounds.sorted(), "bucket bounds must ascend")
        self.bounds = bounds
        counts = [Int](repeating: 0, count: bounds.count)
    }

    public mutating func observe(_ value: Double) {
        if let index = bounds.firstIndex(where: { value <= $0 }) { counts[index] += 1 }
        sum += value
        count += 1
    }

    public func write(name: String, labels: String, into text: inout String) {
        var cumulative = 0
        for (bound, bucketCount) in zip(bounds, counts) {
            cumulative += bucketCount
            text += "\(name)_bucket{\(labels),le=\"\(bound)\"} \(cumulative)\n"
        }
        text += "\(name)_bucket{\(labels),le=\"+Inf\"} \(count)\n"
        text += "\(name)_sum{\(labels)} \(sum)\n"
        text += "\(name)_count{\(labels)} \(count)\n"
    }
}
