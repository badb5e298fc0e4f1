import Compute
import Foundation
import NIOCore
import OpenAIAPI

/// A `vllm bench serve` compatible load generator for `/v1/completions`: random token prompts
/// (or vLLM's prefix-repetition prompts, which share a few prefixes and so load a few experts),
/// Poisson (or gamma) arrivals or all at once, an optional concurrency cap, streamed responses
/// timed per event.
public struct ServeBenchmark: Sendable {
    public struct Options: Sendable {
        public var endpoint = "/v1/completions"
        public var model: String?
        public var apiKey: String?
        public var inputLength = 1024
        public var outputLength = 128
        public var promptCount = 1000
        public var requestRate = Double.infinity
        public var burstiness = 1.0
        public var maxConcurrency: Int?
        public var seed: UInt64 = 0
        public var ignoresEOS = false
        /// Token ids prompts are drawn from.
        public var vocabulary: [Int] = []
        /// With prefix repetition, each prompt is one of `prefixCount` random prefixes of
        /// `prefixLength` tokens (taken in turn) followed by `inputLength` random tokens.
        public var prefixRepetition: (prefixLength: Int, prefixCount: Int)?
        /// A request rate that changes over the run, in place of `requestRate`.
        public var ramp: Ramp?

        public init() {}
    }

    /// vLLM's ramp-up: the rate of request `i` of `N` goes from `startRate` to `endRate` as
    /// `i / (N − 1)` goes from 0 to 1, in a straight line or geometrically; each request waits a
    /// gamma-distributed interval at its own rate before the next. With `downRate`, the rate rises
    /// over the first half of the requests and falls from `endRate` to `downRate` over the second
    /// (a load that comes and goes, for autoscaling).
    public struct Ramp: Sendable, Equatable {
        public enum Strategy: String, Sendable { case linear, exponential }
        public let strategy: Strategy
        public let startRate: Double
        public let endRate: Double
        public let downRate: Double?

        public init(strategy: Strategy, startRate: Double, endRate: Double, downRate: Double? = nil) {
            self.strategy = strategy
            self.startRate = startRate
            self.endRate = endRate
            self.downRate = downRate
        }

        /// Requests per second of request `index` of `count`.
        public func rate(index: Int, of count: Int) -> Double {
            func between(_ from: Double, _ to: Double, _ progress: Double) -> Double {
                switch strategy {
                case .linear: from + (to - from) * progress
                case .exponential: from * pow(to / from, progress)
                }
            }
            guard let downRate else { return between(startRate, endRate, Double(index) / Double(max(count - 1, 1))) }
            let half = count / 2
            if index < half { return between(startRate, endRate, Double(index) / Double(max(half - 1, 1))) }
            return between(endRate, downRate, Double(index - half) / Double(max(count - half - 1, 1)))
        }
    }

    public let server: HTTPExchange
    public let options: Options

    public init(server: HTTPExchange, options: Options) {
        self.server = server
        self.options = options
    }

    /// The model named by the server's `/v1/models`, as vLLM's client picks it when `--model` is absent.
    public func servedModel() async throws -> String {
        let (status, body) = try await server.fetch(method: "GET", path: "/v1/models", headers: authorization)
        guard status == 200, let object = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any],
              let data = object["data"] as? [[String: Any]], let id = data.first?["id"] as? String else {
            throw BenchmarkError.server("GET /v1/models answered \(status): \(body.prefix(200))")
        }
        return id
    }

    public func run(progress: @escaping @Sendable (Int, Int) -> Void) async throws -> BenchmarkReport {
        precondition(!options.vocabulary.isEmpty, "prompts need a vocabulary")
        let model: String
        if let named = options.model { model = named } else { model = try await servedModel() }
        var generator = SeededGenerator(seed: options.seed)
        let prompts = makePrompts(&generator)
        let delays = arrivalDelays(&generator)
        let clock = ContinuousClock()
        let start = clock.now
        var records = [RequestRecord?](repeating: nil, count: prompts.count)
        try await withThrowingTaskGroup(of: (Int, RequestRecord).self) { group in
            var inFlight = 0, finished = 0
            for (index, prompt) in prompts.enumerated() {
                let due = start + .seconds(delays[index])
                if due > clock.now { try await Task.sleep(until: due, clock: clock) }
                if let limit = options.maxConcurrency, inFlight >= limit, let (done, record) = try await group.next() {
                    records[done] = record
                    inFlight -= 1
                    finished += 1
                    progress(finished, prompts.count)
                }
                inFlight += 1
                group.addTask { (index, await self.send(prompt, model: model, benchmarkStart: start)) }
            }
            for try await (done, record) in group {
                records[done] = record
                finished += 1
                progress(finished, prompts.count)
            }
        }
        let duration = (clock.now - start).seconds
        return BenchmarkReport(records: records.map { $0! }, duration: duration, maxConcurrency: options.maxConcurrency,
                               requestRate: options.requestRate)
    }

    /// Inter-arrival times drawn from a gamma distribution of mean 1/rate and shape `burstiness`
    /// (1 is Poisson), then scaled so that the last arrives at N / rate, as vLLM does.
    private func arrivalDelays(_ generator: inout SeededGenerator) -> [Double] {
        if let ramp = options.ramp {
            var total = 0.0
            return (0..<options.promptCount).map { index in
                defer {
                    let rate = ramp.rate(index: index, of: options.promptCount)
                    total += Self.gamma(shape: options.burstiness, scale: 1 / (rate * options.burstiness), &generator)
                }
                return total
            }
        }
        guard options.requestRate.isFinite else { return [Double](repeating: 0, count: options.promptCount) }
        var total = 0.0
        var delays: [Double] = []
        for _ in 0..<options.promptCount {
            total += Self.gamma(shape: options.burstiness, scale: 1 / (options.requestRate * options.burstiness), &generator)
            delays.append(total)
        }
        let target = Double(options.promptCount) / options.requestRate
        return delays.map { total > 0 ? $0 * target / total : 0 }
    }

    private var authorization: [(String, String)] { options.apiKey.map { [("Authorization", "Bearer \($0)")] } ?? [] }

    private func makePrompts(_ generator: inout SeededGenerator) -> [[Int]] {
        func tokens(_ count: Int) -> [Int] {
            (0..<count).map { _ in options.vocabulary[Int(generator.next() % UInt64(options.vocabulary.count))] }
        }
        guard let repetition = options.prefixRepetition else { return (0..<options.promptCount).map { _ in tokens(options.inputLength) } }
        let prefixes = (0..<repetition.prefixCount).map { _ in tokens(repetition.prefixLength) }
        return (0..<options.promptCount).map { index in prefixes[index % prefixes.count] + tokens(options.inputLength) }
    }

    private func send(_ prompt: [Int], model: String, benchmarkStart: ContinuousClock.Instant) async -> RequestRecord {
        var record = RequestRecord(promptLength: prompt.count)
        let body = CompletionRequest(prompt: .tokenLists([prompt]), fields: SamplingFields(
            model: model, maxTokens: options.outputLength, stream: true, streamOptions: StreamOptions(includeUsage: true),
            ignoreEOS: options.ignoresEOS ? true : nil, repetitionPenalty: 1.0))
        let clock = ContinuousClock()
        let sent = clock.now
        record.startTime = (sent - benchmarkStart).seconds
        var parser = ServerSentEventParser()
        let decoder = JSONDecoder()
        var lastToken: ContinuousClock.Instant?
        var status = 0
        do {
            let payload = try JSONEncoder().encode(body)
            try await server.send(method: "POST", path: options.endpoint, headers: authorization, body: Array(payload),
                                  onHead: { status = $0.status }) { buffer in
                let arrival = clock.now
                for event in parser.feed(buffer.readableBytesView) where event != "[DONE]" {
                    guard let chunk = try? decoder.decode(StreamedChunk.self, from: Data(event.utf8)) else { continue }
                    if let error = chunk.error {
                        record.error = error.message ?? "error event"
                    }
                    if chunk.choiceCount > 0 {
                        if let previous = lastToken {
                            record.interTokenLatencies.append((arrival - previous).seconds)
                        } else {
                            record.timeToFirstToken = (arrival - sent).seconds
                        }
                        lastToken = arrival
                    }
                    if let tokens = chunk.usage?.completionTokens { record.outputTokens = tokens }
                }
            }
            if status != 200 && record.error.isEmpty { record.error = "HTTP \(status)" }
        } catch {
            record.error = "\(error)"
        }
        if let lastToken { record.latency = (lastToken - sent).seconds }
        record.success = record.error.isEmpty && lastToken != nil
        return record
    }

    /// Marsaglia and Tsang's method (with the shape < 1 boost).
    static func gamma(shape: Double, scale: Double, _ generator: inout SeededGenerator) -> Double {
        if shape < 1 {
            let u = max(generator.unit(), 1e-300)
            return gamma(shape: shape + 1, scale: scale, &generator) * pow(u, 1 / shape)
        }
        let d = shape - 1.0 / 3, c = 1 / (9 * d).squareRoot()
        while true {
            var x = 0.0, v = 0.0
            repeat {
                x = generator.normal()
                v = 1 + c * x
            } while v <= 0
            v = v * v * v
            let u = generator.unit()
            if u < 1 - 0.0331 * x * x * x * x || log(u) < 0.5 * x * x + d * (1 - v + log(v)) { return d * v * scale }
        }
    }
}

public enum BenchmarkError: Error, CustomStringConvertible {
    case server(String)

    public var description: String {
        switch self {
        case .server(let detail): detail
        }
    }
}

/// SplitMix64 with the draws the benchmark needs; the same seed gives the same prompts and arrivals.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    mutating func unit() -> Double { Double(next() >> 11) * 0x1p-53 }

    mutating func normal() -> Double {
        let u = max(unit(), 1e-300), v = unit()
        return (-2 * log(u)).squareRoot() * cos(2 * .pi * v)
    }
}
