import Checkpoint
public import Compute
public import Messages
public import Models
import Scheduling
import Dispatch
import Synchronization

/// What one request produced.
public struct GenerationOutput: Sendable {
    public var promptTokenIDs: [Int]
    public var tokenIDs: [Int] = []
    /// Per generated token, the top log-probabilities of its step (empty unless asked for).
    public var logprobs: [[(tokenID: Int, logprob: Float)]] = []
    /// Per generated token, the full logits of its step (kept only when asked for; tests use it).
    public var logits: [[Float]] = []
    public var isFinished = false
}

/// Options of one generation run.
public struct GenerationOptions: Sendable {
    public let maxTokens: Int
    public let stopTokenIDs: Set<Int>
    public let logprobCount: Int
    public let keepsLogits: Bool

    public init(maxTokens: Int, stopTokenIDs: Set<Int> = [], logprobCount: Int = 0, keepsLogits: Bool = false) {
        self.maxTokens = maxTokens
        self.stopTokenIDs = stopTokenIDs
        self.logprobCount = logprobCount
        self.keepsLogits = keepsLogits
    }
}

public enum GenerationError: Error, CustomStringConvertible, Equatable {
    case emptyPrompt
    case tokenOutOfVocabulary(id: Int, vocabularySize: Int)
    case tooLong(tokens: Int, maxPositions: Int)
    case engine(String)

    public var description: String {
        switch self {
        case .emptyPrompt: "the prompt has no tokens"
        case .tokenOutOfVocabulary(let id, let size): "token id \(id) is outside the vocabulary (0..<\(size))"
        case .tooLong(let tokens, let limit): "prompt plus max tokens is \(tokens), beyond the model's \(limit) positions"
        case .engine(let message): message
        }
    }
}

/// The steps of a ``Generator/generate(prompts:sampling:options:decodeTiming:)`` run in which every
/// sequence was decoding (each had its first token before the step), the first of them left out
/// (a batch bucket's first step runs eagerly and records its graph): what a decode step costs,
/// apart from the prefill however long that took. Filled on the thread that runs `generate`.
public final class DecodeTiming {
    public private(set) var stepCount = 0
    public private(set) var seconds = 0.0

    public init() {}

    func add(seconds step: Double) {
        stepCount += 1
        seconds += step
    }
}

/// Runs a fixed set of requests to completion through an ``EngineCore`` sized for exactly them,
/// every prompt prefilled in the first step (or in chunks of `maxBatchedTokens`): `flexpert generate`, `bench model` and the parity
/// tests, which so check the serving engine's own path against HF transformers.
public final class Generator {
    public let model: CausalLM
    public let backend: any Backend
    public let blockSize: Int
    /// Tokens per step at most (prompts are prefilled in chunks); `nil` prefills every prompt in the first step.
    public let maxBatchedTokens: Int?

    public init(model: CausalLM, backend: any Backend, blockSize: Int = 16, maxBatchedTokens: Int? = nil) {
        self.model = model
        self.backend = backend
        self.blockSize = blockSize
        self.maxBatchedTokens = maxBatchedTokens
    }

    public func generate(prompts: [[Int]], sampling: [SamplingParameters], options: GenerationOptions,
                         decodeTiming: DecodeTiming? = nil) throws -> [GenerationOutput] {
        precondition(prompts.count == sampling.count, "one sampling configuration per prompt")
        let vocabulary = model.vocabularySize, maxPositions = model.configuration.decoder.maxPositionCount
        for prompt in prompts {
            guard !prompt.isEmpty else { throw GenerationError.emptyPrompt }
            if let bad = prompt.first(where: { $0 < 0 || $0 >= vocabulary }) {
                throw GenerationError.tokenOutOfVocabulary(id: bad, vocabularySize: vocabulary)
            }
            guard prompt.count + options.maxTokens <= maxPositions else {
                throw GenerationError.tooLong(tokens: prompt.count + options.maxTokens, maxPositions: maxPositions)
            }
        }
        guard !prompts.isEmpty else { return [] }
        let lengths = prompts.map { $0.count + options.maxTokens }
        // One more block than the sequences need: the engine keeps one for padding steps.
        let blockCount = lengths.reduce(1) { $0 + ($1 + blockSize - 1) / blockSize }
        let cache = try KVCache(model: model, blockSize: blockSize, blockCount: blockCount, backend: backend)
        let core = try EngineCore(model: model, backend: backend, cache: cache, configuration: SchedulerConfiguration(
            maxBatchedTokens: maxBatchedTokens ?? prompts.reduce(0) { $0 + $1.count }, maxSequences: prompts.count,
            maxModelLength: lengths.max()!))
        let collected = Mutex<[[EngineOutput]]>(prompts.map { _ in [] })
        // Sequences with a token so far; counted as outputs arrive (on this thread, inside `step`).
        let started = Mutex(0)
        let stopTokens = options.stopTokenIDs.sorted()
        for (index, prompt) in prompts.enumerated() {
            let request = EngineRequest(id: RequestID(UInt64(index)), promptTokenIDs: prompt, sampling: sampling[index],
                                        maxTokens: options.maxTokens, stopTokenIDs: stopTokens,
                                        logprobCount: options.logprobCount > 0 ? options.logprobCount : nil,
                                        keepsLogits: options.keepsLogits)
            core.add(request) { output in
                collected.withLock {
                    if !output.tokenIDs.isEmpty && !$0[index].contains(where: { !$0.tokenIDs.isEmpty }) { started.withLock { $0 += 1 } }
                    $0[index].append(output)
                }
            }
        }
        var decodingSteps = 0
        while true {
            let decoding = started.withLock { $0 } == prompts.count
            let start = DispatchTime.now().uptimeNanoseconds
            guard try core.step() else { break }
            if decoding {
                decodingSteps += 1
                if decodingSteps > 1 { decodeTiming?.add(seconds: Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9) }
            }
        }
        return try collected.withLock { $0 }.enumerated().map { index, outputs in
            var result = GenerationOutput(promptTokenIDs: prompts[index])
            for output in outputs {
                if case .error(let message) = output.finishReason { throw GenerationError.engine(message) }
                result.tokenIDs += output.tokenIDs
                result.logprobs += output.logprobs.map { $0.top.map { ($0.tokenID, $0.logprob) } }
                if options.keepsLogits && !output.logits.isEmpty { result.logits.append(output.logits) }
                if output.finishReason != nil { result.isFinished = true }
            }
            return result
        }
    }
}
