import ArgumentParser
import Checkpoint
import Engine
import Foundation
import Messages
import Models
import Tokenization

struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Generate tokens for one prompt on one device (CPU or one CUDA GPU).")

    @Option(help: "A Hugging Face checkpoint folder (config.json, safetensors, tokenizer files).")
    var model: String

    @Option(help: "Prompt text (needs tokenizer.json in the model folder).")
    var prompt: String?

    @Option(name: .customLong("prompt-ids"), help: "Prompt as comma-separated token ids, e.g. 1,2,3.")
    var promptIDs: String?

    @Option(name: .customLong("max-tokens"), help: "Tokens to generate (exactly this many unless --stop-at-eos).")
    var maxTokens = 16

    @Option(help: "0 is greedy.")
    var temperature: Float = 0

    @Option(name: .customLong("top-p"))
    var topP: Float = 1

    @Option(name: .customLong("top-k"))
    var topK: Int?

    @Option(help: "Seed of the sampler's random generator.")
    var seed: UInt64?

    @Option(help: "Report the top K log-probabilities of each generated token.")
    var logprobs: Int?

    @Option(name: .customLong("load-format"), help: "auto: weights from the folder; dummy: seeded random weights from config.json alone.")
    var loadFormat: String = "auto"

    @Flag(name: .customLong("stop-at-eos"), help: "Stop at an end-of-sequence token.")
    var stopsAtEOS = false

    @Option(help: "cpu or cuda.")
    var device: DeviceKind = .cpu

    @Flag(help: "Print one JSON object.")
    var json = false

    func validate() throws {
        guard (prompt == nil) != (promptIDs == nil) else { throw ValidationError("give exactly one of --prompt and --prompt-ids") }
        guard maxTokens >= 1 else { throw ValidationError("--max-tokens must be at least 1") }
        guard LoadFormat(rawValue: loadFormat) != nil else { throw ValidationError("--load-format must be auto or dummy") }
        if let logprobs, logprobs < 0 { throw ValidationError("--logprobs must be ≥ 0") }
    }

    func run() throws {
        let tokenizer = FileManager.default.fileExists(atPath: model + "/tokenizer.json") ? try Tokenizer(folder: model) : nil
        let promptTokens: [Int]
        if let prompt {
            guard let tokenizer else { throw ValidationError("--prompt needs \(model)/tokenizer.json; use --prompt-ids") }
            promptTokens = tokenizer.encode(prompt)
        } else {
            promptTokens = try parseIDList(promptIDs ?? "", option: "--prompt-ids")
        }
        let sampling = try SamplingParameters(temperature: temperature, topP: topP, topK: topK, seed: seed).validated()
        var stopTokens: Set<Int> = []
        if stopsAtEOS {
            stopTokens = Set(try GenerationConfiguration(folder: model).eosTokenIDs)
            if let tokenizer, let eos = try TokenizerConfiguration(folder: model).eosToken, let id = tokenizer.id(of: eos) {
                stopTokens.insert(id)
            }
        }
        let backend = try device.makeBackend()
        let causalLM = try CausalLM.load(folder: model, format: LoadFormat(rawValue: loadFormat)!, on: backend)
        let generator = Generator(model: causalLM, backend: backend)
        let output = try generator.generate(
            prompts: [promptTokens], sampling: [sampling],
            options: GenerationOptions(maxTokens: maxTokens, stopTokenIDs: stopTokens, logprobCount: logprobs ?? 0))[0]
        let text = try tokenizer?.decode(output.tokenIDs)
        if json {
            let logprobList: Any = logprobs == nil ? NSNull() : output.logprobs.map { step in
                step.map { ["token_id": $0.tokenID, "logprob": Double($0.logprob)] as [String: Any] }
            }
            print(try jsonText([
                "prompt_token_ids": promptTokens, "token_ids": output.tokenIDs,
                "text": text ?? NSNull(), "logprobs": logprobList,
            ] as [String: Any]))
        } else if let text {
            print(text)
        } else {
            print(output.tokenIDs.map(String.init).joined(separator: ","))
        }
    }
}
