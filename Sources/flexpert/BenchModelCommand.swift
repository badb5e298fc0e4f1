import Foundation
import ArgumentParser
import Checkpoint
import Compute
import Dispatch
import Engine
import Models

struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Benchmarks that print tables.", subcommands: [BenchModelCommand.self, BenchServeCommand.self])
}

/// Prefill and decode throughput of one model on this machine's CPU, without a server.
///
/// Prefill time is a run with one output token; decode time is a run with `1 + decodeSteps` tokens
/// minus that, so both share the same warm caches and neither includes loading.
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

    func run() throws {
        guard let format = LoadFormat(rawValue: loadFormat) else { throw ValidationError("--load-format must be auto or dummy") }
        let backend = try device.makeBackend()
        let causalLM = try CausalLM.load(folder: model, format: format, on: backend)
        let generator = Generator(model: causalLM, backend: backend)
        let decoder = causalLM.configuration.decoder
        print("model \(model) (\(causalLM.configuration.architectureName), \(decoder.layerCount) layers, hidden \(decoder.hiddenSize)), \(backend.device)")
        print("prompt \(promptTokens) tokens, \(decodeSteps) decode steps, best of \(repetitions)")
        print("| batch | prefill tokens/s | decode tokens/s | decode step ms |")
        print("|---:|---:|---:|---:|")
        for batch in try parseIDList(batchSizes, option: "--batch-sizes") where batch > 0 {
            let prompts = (0..<batch).map { request in (0..<promptTokens).map { (request * 7919 + $0 * 31) % causalLM.vocabularySize } }
            let sampling = prompts.map { _ in SamplingParameters.greedy }
            func seconds(maxTokens: Int) throws -> Double {
                let start = DispatchTime.now().uptimeNanoseconds
                _ = try generator.generate(prompts: prompts, sampling: sampling, options: GenerationOptions(maxTokens: maxTokens))
                return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            }
            _ = try seconds(maxTokens: 2)
            var prefill = Double.infinity, decode = Double.infinity
            for _ in 0..<repetitions {
                let prefillOnly = try seconds(maxTokens: 1)
                let whole = try seconds(maxTokens: 1 + decodeSteps)
                prefill = min(prefill, prefillOnly)
                decode = min(decode, max(whole - prefillOnly, 1e-9))
            }
            let prefillRate = Double(batch * promptTokens) / prefill
            let decodeRate = Double(batch * decodeSteps) / decode
            print("| \(batch) | \(Int(prefillRate)) | \(Int(decodeRate)) | \(String(format: "%.2f", decode / Double(decodeSteps) * 1000)) |")
        }
    }
}
