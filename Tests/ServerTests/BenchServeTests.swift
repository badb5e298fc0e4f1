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
    }
}
