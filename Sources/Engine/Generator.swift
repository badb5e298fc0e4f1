public import Compute
public import Models
import Checkpoint

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

    public var description: String {
        switch self {
        case .emptyPrompt: "the prompt has no tokens"
        case .tokenOutOfVocabulary(let id, let size): "token id \(id) is outside the vocabulary (0..<\(size))"
        case .tooLong(let tokens, let limit): "prompt plus max tokens is \(tokens), beyond the model's \(limit) positions"
        }
    }
}

/// Runs a fixed set of requests to completion on one rank: all prompts in one prefill step, then
/// one decode step per token for every unfinished request. `flexpert generate` and the parity
/// tests use it; the serving engine's scheduler replaces it for continuous batching.
public final class Generator {
    public let model: CausalLM
    public let backend: any Backend
    public let blockSize: Int

    private var tokens: [Int32] = []
    private var positions: [Int32] = []
    private var slots: [Int32] = []
    private var tokenRequests: [Int32] = []
    private var logitRows: [Int32] = []

    public init(model: CausalLM, backend: any Backend, blockSize: Int = 16) {
        self.model = model
        self.backend = backend
        self.blockSize = blockSize
    }

    public func generate(prompts: [[Int]], sampling: [SamplingParameters], options: GenerationOptions) throws -> [GenerationOutput] {
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
        let blocksPerRequest = prompts.map { ($0.count + options.maxTokens + blockSize - 1) / blockSize }
        let maxBlocks = blocksPerRequest.max() ?? 1
        let cache = try KVCache(model: model, blockSize: blockSize, blockCount: blocksPerRequest.reduce(0, +), backend: backend)
        var blockTable = [Int32](repeating: 0, count: prompts.count * maxBlocks)
        var nextBlock: Int32 = 0
        for (request, count) in blocksPerRequest.enumerated() {
            for index in 0..<count {
                blockTable[request * maxBlocks + index] = nextBlock
                nextBlock += 1
            }
        }
        var samplers = sampling.map { Sampler($0) }
        var outputs = prompts.map { GenerationOutput(promptTokenIDs: $0) }
        var logits = [Float](repeating: 0, count: prompts.count * vocabulary)
        var isPrefill = true
        while outputs.contains(where: { !$0.isFinished }) {
            tokens.removeAll(keepingCapacity: true)
            positions.removeAll(keepingCapacity: true)
            slots.removeAll(keepingCapacity: true)
            tokenRequests.removeAll(keepingCapacity: true)
            logitRows.removeAll(keepingCapacity: true)
            var active: [Int] = []
            for (request, output) in outputs.enumerated() where !output.isFinished {
                let length = output.promptTokenIDs.count + output.tokenIDs.count
                let range = isPrefill ? 0..<length : (length - 1)..<length
                for position in range {
                    let token = position < output.promptTokenIDs.count
                        ? output.promptTokenIDs[position] : output.tokenIDs[position - output.promptTokenIDs.count]
                    tokens.append(Int32(token))
                    positions.append(Int32(position))
                    slots.append(blockTable[request * maxBlocks + position / blockSize] * Int32(blockSize) + Int32(position % blockSize))
                    tokenRequests.append(Int32(request))
                }
                logitRows.append(Int32(tokens.count - 1))
                active.append(request)
            }
            isPrefill = false
            backend.beginStep()
            let batch = AttentionBatch(
                tokenCount: tokens.count,
                positions: try upload(positions),
                slotMapping: try upload(slots),
                tokenRequests: try upload(tokenRequests),
                blockTables: try upload(blockTable, shape: Shape(prompts.count, maxBlocks)))
            let context = ForwardContext(backend: backend, batch: batch, caches: cache.layers, rotary: model.rotary)
            let stepLogits = try model.forward(tokenIDs: try upload(tokens), logitRows: try upload(logitRows), context: context)
            try backend.synchronize()
            try logits.withUnsafeMutableBufferPointer { try backend.download(stepLogits, into: $0) }
            for (row, request) in active.enumerated() {
                logits.withUnsafeBufferPointer { all in
                    let rowLogits = UnsafeBufferPointer(rebasing: all[(row * vocabulary)..<((row + 1) * vocabulary)])
                    let token = samplers[request].sample(rowLogits)
                    outputs[request].tokenIDs.append(token)
                    if options.logprobCount > 0 {
                        outputs[request].logprobs.append(Sampler.topLogprobs(rowLogits, count: options.logprobCount))
                    }
                    if options.keepsLogits { outputs[request].logits.append(Array(rowLogits)) }
                    if outputs[request].tokenIDs.count >= options.maxTokens || options.stopTokenIDs.contains(token) {
                        outputs[request].isFinished = true
                    }
                }
            }
        }
        return outputs
    }

    private func upload(_ values: [Int32], shape: Shape? = nil) throws -> Tensor {
        let tensor = try backend.makeTensor(shape ?? Shape(values.count), .int32, in: .scratch)
        try values.withUnsafeBytes {
            try backend.upload(HostTensor(bytes: $0, shape: tensor.shape, dtype: .int32, owner: nil), into: tensor)
        }
        return tensor
    }
}
