public import Foundation

/// The aggregates of `vllm bench serve` (`calculate_metrics`) over a run's records.
public struct BenchmarkReport: Sendable {
    public let records: [RequestRecord]
    public let duration: Double
    public let maxConcurrency: Int?
    public let requestRate: Double
    /// vLLM's `--percentile-metrics` (which of ttft, tpot, itl, e2el the table and the JSON give
    /// percentiles of) and `--metric-percentiles` (which ones).
    public var percentileMetrics: [Metric] = [.ttft, .tpot, .itl]
    public var metricPercentiles: [Double] = [99]

    /// A latency the report gives the mean, median, standard deviation and percentiles of.
    public enum Metric: String, Sendable, CaseIterable {
        case ttft, tpot, itl, e2el

        /// The section header and the short name in the table, as vLLM prints them.
        var header: String {
            switch self {
            case .ttft: "Time to First Token"
            case .tpot: "Time per Output Token (excl. 1st token)"
            case .itl: "Inter-token Latency"
            case .e2el: "End-to-end Latency"
            }
        }
    }

    public init(records: [RequestRecord], duration: Double, maxConcurrency: Int?, requestRate: Double) {
        self.records = records
        self.duration = duration
        self.maxConcurrency = maxConcurrency
        self.requestRate = requestRate
    }

    /// The values of `metric` over the completed requests, in seconds.
    public func values(_ metric: Metric) -> [Double] {
        switch metric {
        case .ttft: timesToFirstToken
        case .tpot: timesPerOutputToken
        case .itl: interTokenLatencies
        case .e2el: latencies
        }
    }

    /// vLLM's name for percentile `p`: "99", "99.9".
    static func percentileName(_ p: Double) -> String {
        p == p.rounded() ? String(Int(p)) : String(p)
    }

    public var completed: [RequestRecord] { records.filter(\.success) }
    public var totalInput: Int { completed.reduce(0) { $0 + $1.promptLength } }
    public var totalOutput: Int { completed.reduce(0) { $0 + $1.outputTokens } }
    public var timesToFirstToken: [Double] { completed.map(\.timeToFirstToken) }
    public var timesPerOutputToken: [Double] {
        completed.filter { $0.outputTokens > 1 }.map { ($0.latency - $0.timeToFirstToken) / Double($0.outputTokens - 1) }
    }
    public var interTokenLatencies: [Double] { completed.flatMap(\.interTokenLatencies) }
    public var latencies: [Double] { completed.map(\.latency) }

    /// The most tokens in any one-second bucket, token times being start + TTFT, then the running sum of ITLs.
    public var peakOutputThroughput: Double { Double(outputTokensPerSecond.max() ?? 0) }

    /// Token events that arrived in each second of the run (second 0 first), as vLLM counts its
    /// peak: what a plot of throughput over time draws.
    public var outputTokensPerSecond: [Int] {
        var buckets: [Int] = []
        func count(_ time: Double) {
            let second = max(0, Int(time))
            if second >= buckets.count { buckets += [Int](repeating: 0, count: second - buckets.count + 1) }
            buckets[second] += 1
        }
        for record in completed {
            var time = record.startTime + record.timeToFirstToken
            count(time)
            for gap in record.interTokenLatencies {
                time += gap
                count(time)
            }
        }
        return buckets
    }

    /// The most requests in flight at once, over [start, start + latency).
    public var peakConcurrency: Int {
        var events: [(time: Double, change: Int)] = []
        for record in completed {
            events.append((record.startTime, 1))
            events.append((record.startTime + record.latency, -1))
        }
        // An end and a start at the same instant do not overlap.
        events.sort { $0.time < $1.time || ($0.time == $1.time && $0.change < $1.change) }
        var current = 0, peak = 0
        for (_, change) in events {
            current += change
            peak = max(peak, current)
        }
        return peak
    }

    /// numpy's `percentile` with linear interpolation.
    public static func percentile(_ values: [Double], _ p: Double) -> Double {
        guard !values.isEmpty else { return 0 }
        let sorted = values.sorted()
        let rank = p / 100 * Double(sorted.count - 1)
        let low = Int(rank.rounded(.down)), high = min(low + 1, sorted.count - 1)
        return sorted[low] + (sorted[high] - sorted[low]) * (rank - Double(low))
    }

    public static func mean(_ values: [Double]) -> Double { values.isEmpty ? 0 : values.reduce(0, +) / Double(values.count) }

    public static func standardDeviation(_ values: [Double]) -> Double {
        guard !values.isEmpty else { return 0 }
        let average = mean(values)
        return (values.reduce(0) { $0 + ($1 - average) * ($1 - average) } / Double(values.count)).squareRoot()
    }

    /// The table `vllm bench serve` prints.
    public var table: String {
        var lines: [String] = [Self.centred(" Serving Benchmark Result ", "=")]
        func row(_ label: String, _ value: String) { lines.append(label.padding(toLength: 40, withPad: " ", startingAt: 0) + " " + value.padding(toLength: max(10, value.count), withPad: " ", startingAt: 0)) }
        func number(_ label: String, _ value: Double) { row(label, String(format: "%.2f", value)) }
        row("Successful requests:", String(completed.count))
        row("Failed requests:", String(records.count - completed.count))
        if let maxConcurrency { row("Maximum request concurrency:", String(maxConcurrency)) }
        row("Request rate configured (RPS):", requestRate.isInfinite ? "inf" : String(format: "%.2f", requestRate))
        number("Benchmark duration (s):", duration)
        row("Total input tokens:", String(totalInput))
        row("Total generated tokens:", String(totalOutput))
        number("Request throughput (req/s):", Double(completed.count) / duration)
        number("Output token throughput (tok/s):", Double(totalOutput) / duration)
        number("Peak output token throughput (tok/s):", peakOutputThroughput)
        number("Peak concurrent requests:", Double(peakConcurrency))
        number("Total Token throughput (tok/s):", Double(totalInput + totalOutput) / duration)
        for metric in percentileMetrics {
            let values = values(metric), short = metric.rawValue.uppercased()
            lines.append(Self.centred(metric.header, "-"))
            number("Mean \(short) (ms):", Self.mean(values) * 1000)
            number("Median \(short) (ms):", Self.percentile(values, 50) * 1000)
            for p in metricPercentiles { number("P\(Self.percentileName(p)) \(short) (ms):", Self.percentile(values, p) * 1000) }
        }
        lines.append(String(repeating: "=", count: 50))
        return lines.joined(separator: "\n")
    }

    /// The `--result-file` JSON: the aggregates and every request's timings, with vLLM's keys.
    public func json(configuration: [String: Any]) throws -> Data {
        var result = configuration
        let seconds = { (values: [Double]) in values }
        result["duration"] = duration
        result["completed"] = completed.count
        result["failed"] = records.count - completed.count
        result["total_input_tokens"] = totalInput
        result["total_output_tokens"] = totalOutput
        result["request_throughput"] = Double(completed.count) / duration
        result["request_goodput"] = NSNull()
        result["output_throughput"] = Double(totalOutput) / duration
        result["total_token_throughput"] = Double(totalInput + totalOutput) / duration
        result["max_output_tokens_per_s"] = peakOutputThroughput
        result["output_tokens_per_second"] = outputTokensPerSecond
        result["max_concurrent_requests"] = peakConcurrency
        result["input_lens"] = records.map(\.promptLength)
        result["output_lens"] = records.map(\.outputTokens)
        result["ttfts"] = seconds(records.map(\.timeToFirstToken))
        result["itls"] = records.map(\.interTokenLatencies)
        result["latencies"] = records.map(\.latency)
        result["start_times"] = records.map(\.startTime)
        result["errors"] = records.map(\.error)
        for metric in percentileMetrics {
            let values = values(metric), name = metric.rawValue
            result["mean_\(name)_ms"] = Self.mean(values) * 1000
            result["median_\(name)_ms"] = Self.percentile(values, 50) * 1000
            result["std_\(name)_ms"] = Self.standardDeviation(values) * 1000
            for p in metricPercentiles { result["p\(Self.percentileName(p))_\(name)_ms"] = Self.percentile(values, p) * 1000 }
        }
        return try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])
    }

    private static func centred(_ text: String, _ fill: Character) -> String {
        let total = max(0, 50 - text.count), left = total / 2
        return String(repeating: fill, count: left) + text + String(repeating: fill, count: total - left)
    }
}
