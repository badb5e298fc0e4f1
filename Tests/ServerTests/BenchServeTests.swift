import BenchServe
import Foundation
import Testing

/// `bench serve`'s ramps and its per-second throughput, against a real server.
struct BenchServeTests {
    @Test func aRampGoesFromItsStartRateToItsEndRate() {
        let linear = ServeBenchmark.Ramp(strategy: .linear, startRate: 10, endRate: 50)
        #expect((0..<5).map { linear.rate(index: $0, of: 5) } == [10, 20, 30, 40, 50])
        let exponential = ServeBenchmark.Ramp(strategy: .exponential, startRate: 1, endRate: 16)
        #expect((0..<5).map { exponential.rate(index: $0, of: 5) } == [1, 2, 4, 8, 16])
        // Up over the first half of ten requests, down over the second.
        let upAndDown = ServeBenchmark.Ramp(strategy: .linear, startRate: 2, endRate: 10, downRate: 2)
        #expect((0..<10).map { upAndDown.rate(index: $0, of: 10) } == [2, 4, 6, 8, 10, 10, 8, 6, 4, 2])
    }

    @Test(.timeLimit(.minutes(2))) func aRampedRunCountsEveryTokenInItsSecond() async throws {
        let server = try ServerProcess()
        defer { server.stop() }
        var options = ServeBenchmark.Options()
        options.inputLength = 8
        options.outputLength = 4
        options.promptCount = 24
        options.ignoresEOS = true
        options.vocabulary = Array(10..<400)
        options.ramp = ServeBenchmark.Ramp(strategy: .linear, startRate: 20, endRate: 80, downRate: 20)
        let report = try await ServeBenchmark(server: server.exchange, options: options).run { _, _ in }
        #expect(report.completed.count == 24, "\(report.records.map(\.error).filter { !$0.isEmpty })")
        #expect(report.outputTokensPerSecond.reduce(0, +) == 24 * 4)
        #expect(Double(report.outputTokensPerSecond.max() ?? 0) == report.peakOutputThroughput)
        let json = try #require(try JSONSerialization.jsonObject(with: report.json(configuration: [:])) as? [String: Any])
        #expect((json["output_tokens_per_second"] as? [Int])?.reduce(0, +) == 24 * 4)
        // vLLM's defaults: ttft, tpot and itl at the 99th percentile, and no e2el.
        #expect(json["p99_ttft_ms"] is Double && json["std_itl_ms"] is Double && json["mean_e2el_ms"] == nil)

        var chosen = report
        chosen.percentileMetrics = [.ttft, .e2el]
        chosen.metricPercentiles = [25, 50, 99.9]
        let chosenJSON = try #require(try JSONSerialization.jsonObject(with: chosen.json(configuration: [:])) as? [String: Any])
        let keys = chosenJSON.keys
        for name in ["ttft", "e2el"] {
            for key in ["mean_\(name)_ms", "median_\(name)_ms", "std_\(name)_ms", "p25_\(name)_ms", "p50_\(name)_ms", "p99.9_\(name)_ms"] {
                #expect(keys.contains(key), "\(key)")
            }
        }
        #expect(!keys.contains("mean_itl_ms") && !keys.contains("p99_ttft_ms"))
        let table = chosen.table
        for line in ["End-to-end Latency", "P25 TTFT (ms):", "P99.9 E2EL (ms):", "Mean E2EL (ms):"] {
            #expect(table.contains(line), "\(line)")
        }
        #expect(!table.contains("ITL"))
        let median = try #require(chosenJSON["p50_e2el_ms"] as? Double)
        #expect(abs(median - BenchmarkReport.percentile(chosen.latencies, 50) * 1000) < 1e-9)
        #expect(median == chosenJSON["median_e2el_ms"] as? Double)
    }
}
