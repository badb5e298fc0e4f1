import ArgumentParser
import Checkpoint
import Compute
import ComputeCUDA
import Dispatch
import Engine
import Foundation
import Messages
import Models

struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Benchmarks that print tables.", subcommands: [BenchModelCommand.self, BenchServeCommand.self, BenchAllToAllCommand.self])
}

/// Prefill and decode throughput of one model on this machine's CPU, without a server.
///
/// Prefill time is a run with one output token; decode time is the mean of a run's `decodeSteps`
/// steps in which every sequence decodes, each timed alone (``DecodeTiming``), so neither includes
/// loading, and decode leaves out the prefill and what a run pays once (a bucket's first step).
struct BenchModelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "model", abstract: "Time prefill and decode steps of a model.")

    @Option(help: "A checkpoint folder (with --load-format dummy, config.json alone).")
    var model: String

    @Option(name: .customLong("load-format"))
    var loadFormat: String = "dummy"

    @Option(help: "cpu or cuda.")
    var device: DeviceKind = .cpu

    @Option(name: .customLong("prompt-tokens"))
    var promptTokens = 256

    @Option(name: .customLong("decode-steps"))
    var decodeSteps = 32

    @Option(name: .customLong("batch-sizes"), help: "Comma-separated batch sizes to time.")
    var batchSizes = "1,8"

    @Option(help: "Timed repetitions per batch size (the best is reported).")
    var repetitions = 3

    @Option(name: .customLong("max-batched-tokens"), help: "Tokens per step at most: prompts are prefilled in chunks of this many.")
    var maxBatchedTokens = 8192

    @Option(help: "Sampling temperature of every sequence (0 is greedy). 1, as vLLM's latency benchmark: so that the rows of a batch draw different tokens, as served ones do.")
    var temperature: Float = 1

    @Flag(name: .customLong("profile-kernels"), help: "On CUDA, also time every kernel of the decode steps (GPU time per kernel).")
    var profileKernels = false

    func validate() throws {
        guard promptTokens >= 1, decodeSteps >= 1, repetitions >= 1, maxBatchedTokens >= 1 else {
            throw ValidationError("--prompt-tokens, --decode-steps, --repetitions and --max-batched-tokens must be at least 1")
        }
        guard temperature >= 0, temperature.isFinite else { throw ValidationError("--temperature must be ≥ 0 and finite") }
    }

    func run() throws {
        guard let format = LoadFormat(rawValue: loadFormat) else { throw ValidationError("--load-format must be auto or dummy") }
        let backend = try device.makeBackend()
        let causalLM = try CausalLM.load(folder: model, format: format, on: backend)
        let generator = Generator(model: causalLM, backend: backend, maxBatchedTokens: maxBatchedTokens)
        let decoder = causalLM.configuration.decoder
        print("model \(model) (\(causalLM.configuration.architectureName), \(decoder.layerCount) layers, hidden \(decoder.hiddenSize)), \(backend.device)")
        print("prompt \(promptTokens) tokens, \(decodeSteps) decode steps, best of \(repetitions), at most \(maxBatchedTokens) tokens per step, temperature \(temperature)")
        let cuda = backend as? CUDABackend
        let bandwidth = try cuda?.measureCopyBandwidth()
        if let bandwidth { print("device copy bandwidth (reads + writes): \(String(format: "%.2f", bandwidth / 1e12)) TB/s") }
        if cuda != nil { print("device memory free after loading: \(String(format: "%.1f", Double(try backend.availableMemoryBytes()) / 1e9)) GB") }
        print("| batch | prefill tokens/s | decode tokens/s | decode step ms | bytes read per step | floor ms | step / floor |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for batch in try parseIDList(batchSizes, option: "--batch-sizes") where batch > 0 {
            let prompts = (0..<batch).map { request in (0..<promptTokens).map { (request * 7919 + $0 * 31) % causalLM.vocabularySize } }
            // Seeded per sequence, so that every repetition draws the same tokens.
            let sampling = prompts.indices.map { SamplingParameters(temperature: temperature, topP: 1, topK: nil, seed: UInt64($0)) }
            func seconds(maxTokens: Int, decodeTiming: DecodeTiming? = nil) throws -> Double {
                let start = DispatchTime.now().uptimeNanoseconds
                _ = try generator.generate(prompts: prompts, sampling: sampling, options: GenerationOptions(maxTokens: maxTokens),
                                           decodeTiming: decodeTiming)
                return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            }
            _ = try seconds(maxTokens: 2)
            var prefill = Double.infinity, stepSeconds = Double.infinity
            for _ in 0..<repetitions {
                prefill = min(prefill, try seconds(maxTokens: 1))
                // The steps in which every sequence decodes, timed one by one: a long prefill's
                // variation from run to run does not reach them.
                let timing = DecodeTiming()
                _ = try seconds(maxTokens: 2 + decodeSteps, decodeTiming: timing)
                stepSeconds = min(stepSeconds, timing.seconds / Double(timing.stepCount))
            }
            let prefillRate = Double(batch * promptTokens) / prefill
            let decodeRate = Double(batch) / stepSeconds
            // The timed steps attend from promptTokens + 2 keys on: their mean context.
            let bytes = DecodeStepBytes(model: causalLM, batch: batch, context: promptTokens + 2 + decodeSteps / 2,
                                        bytesPerElement: backend.activationDType.byteCount).total
            let floor = bandwidth.map { Double(bytes) / $0 }
            print("| \(batch) | \(Int(prefillRate)) | \(Int(decodeRate)) | \(String(format: "%.2f", stepSeconds * 1000)) | "
                  + "\(String(format: "%.2f GB", Double(bytes) / 1e9)) | \(floor.map { String(format: "%.2f", $0 * 1000) } ?? "–") | "
                  + "\(floor.map { String(format: "%.2f×", stepSeconds / $0) } ?? "–") |")
            if profileKernels, let cuda {
                try printKernelProfile(cuda, batch: batch) { try seconds(maxTokens: $0) }
            }
        }
    }
}

extension BenchModelCommand {
    /// GPU time per kernel of the decode steps alone: a profiled run of `1 + decodeSteps` tokens
    /// minus a profiled run of the prefill alone. Decode steps replay graphs, whose kernels run
    /// back to back; a bucket's first step runs eagerly, one step in `decodeSteps`.
    func printKernelProfile(_ cuda: CUDABackend, batch: Int, run: (Int) throws -> Double) throws {
        try cuda.setProfiling(true)
        defer { try? cuda.setProfiling(false) }
        _ = try run(1)
        let prefillEntries = cuda.profiler?.entries ?? []
        let prefill = Dictionary(uniqueKeysWithValues: prefillEntries.map { ($0.name, $0) })
        let prefillTotal = prefillEntries.reduce(0) { $0 + $1.milliseconds }
        print("kernels of batch \(batch), GPU time of the prefill (\(String(format: "%.1f", prefillTotal)) ms in all, launches waited for one by one):")
        print("| kernel | calls | µs per call | ms | share |")
        print("|---|---:|---:|---:|---:|")
        for entry in prefillEntries.prefix(8) {
            print("| \(entry.name) | \(entry.calls) | \(String(format: "%.1f", entry.milliseconds * 1000 / Double(entry.calls))) | "
                  + "\(String(format: "%.2f", entry.milliseconds)) | \(String(format: "%.0f%%", entry.milliseconds / prefillTotal * 100)) |")
        }
        cuda.profiler?.reset()
        _ = try run(1 + decodeSteps)
        let decode = (cuda.profiler?.entries ?? []).map { entry in
            KernelProfiler.Entry(name: entry.name, calls: entry.calls - (prefill[entry.name]?.calls ?? 0),
                                 milliseconds: entry.milliseconds - (prefill[entry.name]?.milliseconds ?? 0))
        }.filter { $0.calls > 0 }.sorted { $0.milliseconds > $1.milliseconds }
        let total = decode.reduce(0) { $0 + $1.milliseconds } / Double(decodeSteps)
        print("kernels of batch \(batch), GPU time per decode step (\(String(format: "%.2f", total)) ms in all):")
        print("| kernel | calls per step | µs per call | ms per step | share |")
        print("|---|---:|---:|---:|---:|")
        for entry in decode.prefix(16) {
            let perStep = entry.milliseconds / Double(decodeSteps)
            print("| \(entry.name) | \(entry.calls / decodeSteps) | \(String(format: "%.1f", entry.milliseconds * 1000 / Double(entry.calls))) | "
                  + "\(String(format: "%.3f", perStep)) | \(String(format: "%.0f%%", perStep / total * 100)) |")
        }
    }
}

/// What a decode step must read at least: every dense weight (embedding rows aside), the experts
/// a batch touches (with uniform routing, E·(1 − (1 − k/E)^b) of each layer's E), and the KV cache
/// of `context` tokens per sequence. Over the copy bandwidth it gives the step's floor.
struct DecodeStepBytes {
    let total: Int

    init(model: CausalLM, batch: Int, context: Int, bytesPerElement: Int) {
        let decoder = model.configuration.decoder
        // The embedding table is read a row per token, unless it is also the LM head.
        let tied = model.head.weight.storage === model.embedding.storage
        var elements = model.denseWeights.reduce(0) { $0 + $1.elementCount } - (tied ? 0 : model.embedding.elementCount)
        elements += batch * model.hiddenSize
        for layer in model.layers {
            guard let experts = layer.experts else { continue }
            let count = Double(experts.expertCount)
            guard case .sparse(let moe) = layer.feedForward else { continue }
            let topK = Double(moe.routing.topK)
            let touched = count * (1 - pow(1 - topK / count, Double(batch)))
            elements += Int(touched * Double(experts.gateUp.elementCount + experts.down.elementCount) / count)
        }
        let row = model.configuration.cacheRow
        let kv = batch * context * decoder.layerCount * (row.holdsValues ? 2 : 1) * row.width
        total = (elements + kv) * bytesPerElement
    }
}
