import ArgumentParser
import BenchServe
import Compute
import Foundation
import Synchronization
import Tokenization

/// `flexpert bench serve`: load a running server as `vllm bench serve` does and print its table.
struct BenchServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve", abstract: "Measure a running OpenAI-compatible server as vllm bench serve does.")

    @Option(help: "The server, http://HOST:PORT.")
    var url = "http://127.0.0.1:8000"

    @Option(help: "Model name to send (default: the first of GET /v1/models).")
    var model: String?

    @Option(help: "Folder with tokenizer.json whose regular tokens make the random prompts (default: the built-in model's).")
    var tokenizer: String?

    @Option(name: [.customLong("dataset-name"), .customLong("dataset")],
            help: "random (random token ids) or prefix_repetition (a few shared prefixes, then random tokens).")
    var dataset = "random"

    @Option(name: .customLong("random-input-len"))
    var inputLength = 1024

    @Option(name: .customLong("random-output-len"))
    var outputLength = 128

    @Option(name: .customLong("prefix-repetition-prefix-len"))
    var prefixLength = 256

    @Option(name: .customLong("prefix-repetition-suffix-len"))
    var suffixLength = 256

    @Option(name: .customLong("prefix-repetition-num-prefixes"))
    var prefixCount = 10

    @Option(name: .customLong("prefix-repetition-output-len"))
    var prefixOutputLength = 128

    @Option(name: .customLong("num-prompts"))
    var promptCount = 1000

    @Option(name: .customLong("request-rate"), help: "Requests per second, or inf to send all at once.")
    var requestRate = "inf"

    @Option(help: "Gamma shape of the arrivals; 1 is Poisson.")
    var burstiness = 1.0

    @Option(name: .customLong("ramp-up-strategy"),
            help: "linear or exponential: the request rate goes from --ramp-up-start-rps to --ramp-up-end-rps over the run (in place of --request-rate).")
    var rampStrategy: String?

    @Option(name: .customLong("ramp-up-start-rps"))
    var rampStartRate: Double?

    @Option(name: .customLong("ramp-up-end-rps"))
    var rampEndRate: Double?

    @Option(name: .customLong("ramp-down-end-rps"),
            help: "With a ramp: rise over the first half of the prompts, then fall from --ramp-up-end-rps to this rate over the second.")
    var rampDownRate: Double?

    @Option(name: .customLong("max-concurrency"))
    var maxConcurrency: Int?

    @Option var seed: UInt64 = 0

    @Flag(name: .customLong("ignore-eos"))
    var ignoresEOS = false

    @Option(name: .customLong("api-key"), help: "Bearer token (default: $FLEXPERT_API_KEY).")
    var apiKey: String?

    @Option(name: .customLong("result-file"), help: "Write the results and per-request timings as JSON.")
    var resultFile: String?

    @Option(name: .customLong("percentile-metrics"), help: "Comma-separated metrics to give percentiles of: ttft, tpot, itl, e2el.")
    var percentileMetrics = "ttft,tpot,itl"

    @Option(name: .customLong("metric-percentiles"), help: "Comma-separated percentiles to give, e.g. 25,50,75,99.")
    var metricPercentiles = "99"

    /// `--percentile-metrics` and `--metric-percentiles`, read as vLLM reads them.
    func percentiles() throws -> (metrics: [BenchmarkReport.Metric], percentiles: [Double]) {
        let metrics = try percentileMetrics.split(separator: ",").map { name -> BenchmarkReport.Metric in
            let trimmed = name.trimmingCharacters(in: .whitespaces)
            guard let metric = BenchmarkReport.Metric(rawValue: trimmed) else {
                throw ValidationError("--percentile-metrics: '\(trimmed)' is none of ttft, tpot, itl, e2el")
            }
            return metric
        }
        let percentiles = try metricPercentiles.split(separator: ",").map { text -> Double in
            let trimmed = text.trimmingCharacters(in: .whitespaces)
            guard let value = Double(trimmed), value >= 0, value <= 100 else {
                throw ValidationError("--metric-percentiles: '\(trimmed)' is not a percentile between 0 and 100")
            }
            return value
        }
        guard !metrics.isEmpty, !percentiles.isEmpty else {
            throw ValidationError("--percentile-metrics and --metric-percentiles name at least one each")
        }
        return (metrics, percentiles)
    }

    func validate() throws {
        guard dataset == "random" || dataset == "prefix_repetition" else {
            throw ValidationError("--dataset-name: 'random' or 'prefix_repetition'")
        }
        guard inputLength >= 1, outputLength >= 1, promptCount >= 1 else {
            throw ValidationError("--random-input-len, --random-output-len and --num-prompts must be positive")
        }
        guard prefixLength >= 0, suffixLength >= 1, prefixCount >= 1, prefixOutputLength >= 1 else {
            throw ValidationError("--prefix-repetition-prefix-len must be ≥ 0, the suffix, prefix count and output length ≥ 1")
        }
        guard requestRate == "inf" || (Double(requestRate).map { $0 > 0 } ?? false) else {
            throw ValidationError("--request-rate must be a positive number or inf")
        }
        if let maxConcurrency, maxConcurrency < 1 { throw ValidationError("--max-concurrency must be positive") }
        guard burstiness > 0 else { throw ValidationError("--burstiness must be positive") }
        _ = try ramp()
        _ = try percentiles()
    }

    /// vLLM's checks of a ramp, and its rates above zero (a rate of zero never sends the next request).
    func ramp() throws -> ServeBenchmark.Ramp? {
        guard let rampStrategy else {
            guard rampStartRate == nil, rampEndRate == nil, rampDownRate == nil else {
                throw ValidationError("--ramp-up-start-rps, --ramp-up-end-rps and --ramp-down-end-rps need --ramp-up-strategy")
            }
            return nil
        }
        guard let strategy = ServeBenchmark.Ramp.Strategy(rawValue: rampStrategy) else {
            throw ValidationError("--ramp-up-strategy must be linear or exponential, got '\(rampStrategy)'")
        }
        guard requestRate == "inf" else { throw ValidationError("--ramp-up-strategy replaces --request-rate: leave that out") }
        guard let start = rampStartRate, let end = rampEndRate else {
            throw ValidationError("--ramp-up-strategy needs both --ramp-up-start-rps and --ramp-up-end-rps")
        }
        guard start > 0, end > 0, (rampDownRate ?? 1) > 0 else { throw ValidationError("ramp rates must be positive") }
        guard start <= end else { throw ValidationError("--ramp-up-start-rps (\(start)) must not exceed --ramp-up-end-rps (\(end))") }
        if let down = rampDownRate, down > end {
            throw ValidationError("--ramp-down-end-rps (\(down)) must not exceed --ramp-up-end-rps (\(end))")
        }
        return ServeBenchmark.Ramp(strategy: strategy, startRate: start, endRate: end, downRate: rampDownRate)
    }

    func run() async throws {
        let vocabularyTokenizer = try Tokenizer(folder: tokenizer ?? DefaultModel.folder())
        var options = ServeBenchmark.Options()
        options.model = model
        options.apiKey = apiKey ?? ProcessInfo.processInfo.environment["FLEXPERT_API_KEY"]
        if dataset == "prefix_repetition" {
            options.inputLength = suffixLength
            options.outputLength = prefixOutputLength
            options.prefixRepetition = (prefixLength, prefixCount)
        } else {
            options.inputLength = inputLength
            options.outputLength = outputLength
        }
        options.promptCount = promptCount
        options.requestRate = requestRate == "inf" ? .infinity : Double(requestRate)!
        options.burstiness = burstiness
        options.ramp = try ramp()
        options.maxConcurrency = maxConcurrency
        options.seed = seed
        options.ignoresEOS = ignoresEOS
        options.vocabulary = (0..<vocabularyTokenizer.vocabularySize).filter { !vocabularyTokenizer.isSpecial($0) }
        let benchmark = ServeBenchmark(server: try HTTPExchange(url: url), options: options)
        let bar = ProgressBar()
        var report = try await benchmark.run { done, total in bar.show(done, total) }
        (report.percentileMetrics, report.metricPercentiles) = try percentiles()
        FileHandle.standardError.write(Data("\n".utf8))
        print(report.table)
        if let resultFile {
            let configuration: [String: Any] = [
                "date": ISO8601DateFormatter().string(from: Date()), "backend": "openai", "endpoint_type": "openai",
                "base_url": url, "model_id": options.model ?? "", "num_prompts": promptCount,
                "request_rate": requestRate == "inf" ? "inf" : options.requestRate as Any, "burstiness": burstiness,
                "ramp_up_strategy": rampStrategy as Any? ?? NSNull(), "ramp_up_start_rps": rampStartRate as Any? ?? NSNull(),
                "ramp_up_end_rps": rampEndRate as Any? ?? NSNull(), "ramp_down_end_rps": rampDownRate as Any? ?? NSNull(),
                "max_concurrency": maxConcurrency as Any? ?? NSNull(), "dataset_name": dataset,
                "input_len": options.inputLength + (options.prefixRepetition?.prefixLength ?? 0),
                "output_len": options.outputLength, "seed": seed,
                "percentile_metrics": percentileMetrics, "metric_percentiles": metricPercentiles,
            ]
            try report.json(configuration: configuration).write(to: URL(fileURLWithPath: resultFile))
        }
    }
}

/// A one-line progress bar on standard error, redrawn at most ten times a second.
final class ProgressBar: Sendable {
    private let state = Mutex<(lastDraw: ContinuousClock.Instant?, started: ContinuousClock.Instant)>((nil, .now))

    func show(_ done: Int, _ total: Int) {
        let now = ContinuousClock.now
        let line: String? = state.withLock { state in
            if done < total, let last = state.lastDraw, now - last < .milliseconds(100) { return nil }
            state.lastDraw = now
            let elapsed = now - state.started
            let seconds = elapsed.seconds
            let filled = total == 0 ? 0 : done * 30 / total
            let rate = seconds > 0 ? Double(done) / seconds : 0
            return "\r\(done * 100 / max(total, 1))%|" + String(repeating: "█", count: filled)
                + String(repeating: " ", count: 30 - filled) + "| \(done)/\(total) [\(String(format: "%.1f", seconds)) s, "
                + String(format: "%.2f", rate) + " req/s]"
        }
        if let line { FileHandle.standardError.write(Data(line.utf8)) }
    }
}
