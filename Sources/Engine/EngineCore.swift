import Checkpoint
public import Compute
public import Messages
public import Models
public import Scheduling

/// One rank's serving engine: the model, its paged KV cache, the scheduler and the samplers.
/// Each ``step()`` is one forward pass over every token the scheduler picked, then one sampled
/// token for each sequence whose known tokens are all computed.
///
/// Owned by one thread (the rank's step loop, see ``EngineLoop``); not thread-safe.
public final class EngineCore {
    public let model: CausalLM
    public let backend: any Backend
    public let cache: KVCache
    public let scheduler: Scheduler
    /// Set when this rank is one of several holding the experts.
    public let expertDispatch: (any ExpertDispatch)?

    /// Requests by their sequence's tag, so that a step finds a chunk's request without a lookup.
    private var active: [ActiveRequest?] = []
    private var freeTags: [Int] = []
    private var tagByID: [RequestID: Int] = [:]
    private var inputs = StepInputs()
    private var generatedTokenCount = 0
    private var finishedRequestCount = 0
    private var rowPlans: [RowPlan] = []
    private var logits: [Float] = []
    /// Per logit row of a step sampled where the logits are: temperature, key words, token.
    private var rowTemperatures: [Float] = []
    private var rowKeys: [Int32] = []
    private var sampledTokens: [Int32] = []
    /// Recorded decode steps, made at the first step that can use them.
    private var decodeGraphs: DecodeGraphs?
    /// Whether plain decode steps run from recorded graphs where the backend has them.
    public var usesStepGraphs = true
    /// Whether a step may record a graph; when not (another thread is using the device beside the
    /// step loop), a step replays a graph recorded earlier or runs eagerly.
    public var recordsStepGraphs = true

    public init(model: CausalLM, backend: any Backend, cache: KVCache, configuration: SchedulerConfiguration,
                expertDispatch: (any ExpertDispatch)? = nil) throws {
        let capacity = (cache.blockCount - 1) * cache.blockSize
        guard capacity >= configuration.maxModelLength else {
            throw EngineError.cacheTooSmall(tokens: capacity, maxModelLength: configuration.maxModelLength)
        }
        guard configuration.maxModelLength <= model.configuration.decoder.maxPositionCount else {
            throw EngineError.modelLengthBeyondPositions(configuration.maxModelLength,
                                                         positions: model.configuration.decoder.maxPositionCount)
        }
        self.model = model
        self.backend = backend
        self.cache = cache
        self.expertDispatch = expertDispatch
        scheduler = Scheduler(configuration: configuration, blockCount: cache.blockCount - 1, blockSize: cache.blockSize)
    }

    public var hasWork: Bool { scheduler.hasWork }
    public var requestCount: Int { tagByID.count }

    /// Queues a request; a request the engine cannot run gets an error output at once. `sink` is
    /// called on the core's thread, inside ``step(padsWhenIdle:)`` (and here).
    public func add(_ request: EngineRequest, sink: @escaping (EngineOutput) -> Void) {
        if let problem = validate(request) {
            sink(.finished(request.id, .error(problem)))
            return
        }
        let tag = freeTags.popLast() ?? active.count
        if tag == active.count { active.append(nil) }
        let sequence = SequenceState(id: request.id.rawValue, tag: tag, promptTokenIDs: request.promptTokenIDs.map(Int32.init),
                                     sharesPrefixes: request.promptLogprobCount == nil)
        active[tag] = ActiveRequest(request: request, sequence: sequence, sink: sink)
        tagByID[request.id] = tag
        scheduler.add(sequence)
    }

    /// Ends a request early; its sink gets a final output with reason `.abort`. Unknown ids are ignored
    /// (the request may have finished while the abort was on its way).
    public func abort(_ id: RequestID) {
        guard let tag = tagByID[id], let request = active[tag] else { return }
        finish(request, .finished(id, .abort))
    }

    /// Ends every request with `reason`, e.g. when the step loop stops or a step failed.
    public func finishAll(_ reason: FinishReason) {
        for case let request? in active {
            finish(request, .finished(request.request.id, reason))
        }
    }

    /// The cache's last block, never handed to a sequence: padding steps write their one token there.
    private var paddingBlock: Int32 { Int32(cache.blockCount - 1) }

    /// Runs one step; false when there was nothing to run. With `padsWhenIdle`, a rank with nothing
    /// to run still runs a step of one padding token, so that its MoE layers join the expert-parallel
    /// exchanges of ranks that do have work.
    public func step(padsWhenIdle: Bool = false) throws -> Bool {
        let chunks = scheduler.schedule()
        guard !chunks.isEmpty else {
            if padsWhenIdle { try runPaddingStep() }
            return padsWhenIdle
        }
        if try runGraphStep(chunks) { return true }
        planRows(chunks)
        let stepLogits = try forward()
        let samplesOnBackend = try sampleOnBackend(chunks, stepLogits)
        if !samplesOnBackend { try downloadLogits(stepLogits) }
        // Before anything counts: a step whose exchange a lost peer broke leaves the requests as they were.
        try expertDispatch?.checkHealth()
        scheduler.completeStep()
        emitOutputs(chunks, samplesOnBackend: samplesOnBackend)
        return true
    }

    /// The step's inputs, and for each chunk where its logit rows are (``RowPlan``).
    private func planRows(_ chunks: [ScheduledChunk]) {
        var tableWidth = 0
        for chunk in chunks { tableWidth = max(tableWidth, chunk.sequence.blocks.count) }
        inputs.reset(requestCount: chunks.count, tableWidth: tableWidth)
        rowPlans.removeAll(keepingCapacity: true)
        for (row, chunk) in chunks.enumerated() {
            let firstToken = inputs.tokens.count
            inputs.append(chunk.sequence, start: chunk.start, count: chunk.count, row: row, blockSize: cache.blockSize)
            rowPlans.append(RowPlan(chunk, request: active[chunk.sequence.tag]!, firstToken: firstToken, logitRows: &inputs.logitRows))
        }
        // A step whose chunks all end mid-prompt still needs one row for the forward pass's shape; it is ignored.
        if inputs.logitRows.isEmpty { inputs.logitRows.append(0) }
    }

    /// The forward pass over the planned inputs: the logits of the planned rows.
    private func forward() throws -> Tensor {
        backend.beginStep()
        let (batch, tokenIDs, logitRows) = try inputs.upload(to: backend)
        let context = ForwardContext(backend: backend, batch: batch, caches: cache.layers, rotary: model.rotary,
                                     expertDispatch: expertDispatch)
        return try model.forward(tokenIDs: tokenIDs, logitRows: logitRows, context: context)
    }

    /// The logits of every planned row to the host (prompt log-probabilities, or sampling there).
    private func downloadLogits(_ stepLogits: Tensor) throws {
        try backend.synchronize()
        let needed = inputs.logitRows.count * model.vocabularySize
        if logits.count < needed { logits = [Float](repeating: 0, count: needed) }
        try logits.withUnsafeMutableBufferPointer {
            try backend.download(stepLogits, into: UnsafeMutableBufferPointer(rebasing: $0[0..<needed]))
        }
    }

    /// Runs the step from a recorded graph when it is a plain decode step: every chunk one token
    /// that samples, by temperature alone, on a backend with step graphs and no expert dispatch.
    private func runGraphStep(_ chunks: [ScheduledChunk]) throws -> Bool {
        guard expertDispatch?.allowsStepGraphs ?? true, usesStepGraphs, backend.supportsStepGraphs else { return false }
        for chunk in chunks {
            guard chunk.count == 1, chunk.samples, let request = active[chunk.sequence.tag], request.drawsByTemperatureNow,
                  request.request.promptLogprobCount == nil else { return false }
        }
        let graphs = try makeDecodeGraphs()
        guard let bucket = graphs.bucketIndex(for: chunks.count),
              recordsStepGraphs || graphs.hasGraph(bucket: bucket, backend: backend) else { return false }
        graphs.resetInputs()
        rowPlans.removeAll(keepingCapacity: true)
        let blockSize = cache.blockSize
        for (row, chunk) in chunks.enumerated() {
            let sequence = chunk.sequence, request = active[sequence.tag]!
            let position = chunk.start, blocks = sequence.blocks
            graphs.host.tokens.append(sequence.tokenIDs[position])
            graphs.host.positions.append(Int32(position))
            graphs.host.slots.append(blocks[position / blockSize] * Int32(blockSize) + Int32(position % blockSize))
            graphs.host.blockTables.append(contentsOf: blocks)
            graphs.host.blockTables.append(contentsOf: repeatElement(0, count: graphs.tableWidth - blocks.count))
            graphs.host.temperatures.append(request.request.sampling.temperature)
            let (low, high) = request.drawKeyWords
            graphs.host.keys.append(low)
            graphs.host.keys.append(high)
            rowPlans.append(RowPlan(firstPromptRow: 0, promptRowCount: 0, firstPromptToken: 0, sampleRow: row))
        }
        try graphs.run(bucket: bucket, model: model, caches: cache.layers, backend: backend, expertDispatch: expertDispatch)
        let rows = chunks.count
        if sampledTokens.count < rows { sampledTokens = [Int32](repeating: 0, count: rows) }
        for row in 0..<rows { sampledTokens[row] = graphs.sampledTokens[row] }
        try expertDispatch?.checkHealth()
        scheduler.completeStep()
        emitOutputs(chunks, samplesOnBackend: true)
        return true
    }

    private func makeDecodeGraphs() throws -> DecodeGraphs {
        if let decodeGraphs { return decodeGraphs }
        let tableWidth = (scheduler.configuration.maxModelLength + cache.blockSize - 1) / cache.blockSize
        let graphs = try DecodeGraphs(backend: backend, maxSequences: scheduler.configuration.maxSequences,
                                      tableWidth: tableWidth, paddingBlock: paddingBlock, blockSize: cache.blockSize)
        decodeGraphs = graphs
        return graphs
    }

    /// Before the first request, on a backend with step graphs: one step of `maxBatchedTokens`
    /// padding tokens sizes the scratch arena for the largest step there will be, then the decode
    /// graph of every batch bucket up to `maxSequences` is recorded (on padding rows), so that the
    /// first requests pay neither (a bucket's first use would otherwise run eagerly, record, and be
    /// recorded again after the first large prefill moved the arena). vLLM captures its graphs at
    /// start-up for the same reason. Not for expert-parallel ranks that exchange rows, whose steps
    /// are collective; a rank that holds every expert alone (``ExpertDispatch/isLocal``) is warmed like a single rank.
    public func warmUp() throws {
        guard expertDispatch?.isLocal ?? true, usesStepGraphs, backend.supportsStepGraphs, !scheduler.hasWork else { return }
        try runPaddingStep(tokens: scheduler.configuration.maxBatchedTokens)
        let graphs = try makeDecodeGraphs()
        let largest = graphs.bucketIndex(for: scheduler.configuration.maxSequences) ?? DecodeGraphs.buckets.count - 1
        for bucket in 0...largest {
            graphs.resetInputs()
            try graphs.run(bucket: bucket, model: model, caches: cache.layers, backend: backend, expertDispatch: expertDispatch)
        }
    }

    /// Before the KV cache is sized, on a backend with step graphs: the largest steps an engine of
    /// `configuration` will run (a prefill of `maxBatchedTokens` padding tokens, then a decode of its
    /// largest graph bucket) run on a throwaway cache of one block, so that the scratch arena holds
    /// their peak, and the memory free afterwards is what the cache may take. For a rank whose
    /// experts are all its own (an expert-parallel rank's steps need its group).
    public static func reserveStepMemory(model: CausalLM, backend: any Backend, configuration: SchedulerConfiguration,
                                         blockSize: Int) throws {
        guard backend.supportsStepGraphs else { return }
        let cache = try KVCache(model: model, blockSize: blockSize, blockCount: 1, backend: backend)
        var inputs = StepInputs()
        inputs.reset(requestCount: 1, tableWidth: 1)
        inputs.appendPadding(count: configuration.maxBatchedTokens, block: 0, blockSize: blockSize)
        backend.beginStep()
        let (batch, tokenIDs, logitRows) = try inputs.upload(to: backend)
        let context = ForwardContext(backend: backend, batch: batch, caches: cache.layers, rotary: model.rotary, expertDispatch: nil)
        _ = try model.forward(tokenIDs: tokenIDs, logitRows: logitRows, context: context)
        try backend.synchronize()
        let graphs = try DecodeGraphs(backend: backend, maxSequences: configuration.maxSequences, tableWidth: 1,
                                      paddingBlock: 0, blockSize: blockSize)
        try graphs.runLargestEagerly(model: model, caches: cache.layers, backend: backend)
        // The arena is replaced by one that holds the peak at a step's start.
        backend.beginStep()
    }

    /// The most tokens one step of an engine of `configuration` runs: its largest prefill chunk,
    /// or its largest decode batch padded to its graph's bucket (what a per-step buffer is sized for).
    public static func maxStepTokens(_ configuration: SchedulerConfiguration) -> Int {
        max(configuration.maxBatchedTokens, DecodeGraphs.rowCount(maxSequences: configuration.maxSequences))
    }

    /// Forgets the recorded step graphs (what they captured changed: an expert-parallel group
    /// and its buffers); the next steps of each size record anew.
    public func discardStepGraphs() {
        decodeGraphs?.discardRecorded()
    }

    /// Steps replayed from recorded graphs and graphs recorded so far (tests, logs).
    public var stepGraphCounts: (replayed: Int, recorded: Int) {
        (decodeGraphs?.replayCount ?? 0, decodeGraphs?.recordCount ?? 0)
    }

    /// Turns the step's tokens (sampled on the backend, or drawn here from the downloaded logits)
    /// and log-probabilities into each request's output.
    private func emitOutputs(_ chunks: [ScheduledChunk], samplesOnBackend: Bool) {
        let vocabulary = model.vocabularySize
        logits.withUnsafeMutableBufferPointer { all in
            for (index, chunk) in chunks.enumerated() {
                guard let request = active[chunk.sequence.tag] else { continue }
                let plan = rowPlans[index]
                var output = EngineOutput(requestID: request.request.id)
                var reports = false
                if plan.promptRowCount > 0, let top = request.request.promptLogprobCount {
                    for offset in 0..<plan.promptRowCount {
                        let row = UnsafeBufferPointer(rebasing: all[((plan.firstPromptRow + offset) * vocabulary)..<((plan.firstPromptRow + offset + 1) * vocabulary)])
                        let token = Int(chunk.sequence.tokenIDs[plan.firstPromptToken + offset])
                        output.promptLogprobs.append(Sampler.logprobs(row, tokenID: token, top: top))
                    }
                    request.nextPromptLogprob = plan.firstPromptToken + plan.promptRowCount
                    reports = true
                }
                if let sampleRow = plan.sampleRow {
                    let token = samplesOnBackend ? Int(sampledTokens[sampleRow])
                        : sample(request, UnsafeMutableBufferPointer(rebasing: all[(sampleRow * vocabulary)..<((sampleRow + 1) * vocabulary)]),
                                 into: &output)
                    chunk.sequence.append(Int32(token))
                    generatedTokenCount += 1
                    output.tokenIDs.append(token)
                    reports = true
                    if request.isStop(token) {
                        output.finishReason = .stop
                    } else if chunk.sequence.generatedCount >= request.request.maxTokens
                                || chunk.sequence.tokenIDs.count >= scheduler.configuration.maxModelLength {
                        output.finishReason = .length
                    }
                }
                if output.finishReason != nil {
                    finish(request, output)
                } else if reports {
                    request.sink(output)
                }
            }
        }
    }

    /// A step of `tokens` padding tokens: what an idle rank runs while its group steps (one), or
    /// the warm-up's largest step.
    private func runPaddingStep(tokens: Int = 1) throws {
        inputs.reset(requestCount: 1, tableWidth: 1)
        inputs.appendPadding(count: tokens, block: paddingBlock, blockSize: cache.blockSize)
        backend.beginStep()
        let (batch, tokenIDs, logitRows) = try inputs.upload(to: backend)
        let context = ForwardContext(backend: backend, batch: batch, caches: cache.layers, rotary: model.rotary,
                                     expertDispatch: expertDispatch)
        _ = try model.forward(tokenIDs: tokenIDs, logitRows: logitRows, context: context)
        try backend.synchronize()
        try expertDispatch?.checkHealth()
    }

    /// Samples the step's rows where the logits are and downloads one token per row, when every
    /// sampled request draws by temperature alone and nothing needs the logits on the host
    /// (log-probabilities, top-k or top-p, a minimum length, parity tests). Returns whether it did.
    private func sampleOnBackend(_ chunks: [ScheduledChunk], _ stepLogits: Tensor) throws -> Bool {
        let rows = inputs.logitRows.count
        for (index, chunk) in chunks.enumerated() {
            let plan = rowPlans[index]
            if plan.promptRowCount > 0 { return false }
            if plan.sampleRow != nil, let request = active[chunk.sequence.tag], !request.drawsByTemperatureNow { return false }
        }
        rowTemperatures.removeAll(keepingCapacity: true)
        rowTemperatures.append(contentsOf: repeatElement(0, count: rows))
        rowKeys.removeAll(keepingCapacity: true)
        rowKeys.append(contentsOf: repeatElement(0, count: 2 * rows))
        for (index, chunk) in chunks.enumerated() {
            guard let row = rowPlans[index].sampleRow, let request = active[chunk.sequence.tag] else { continue }
            rowTemperatures[row] = request.request.sampling.temperature
            (rowKeys[2 * row], rowKeys[2 * row + 1]) = request.drawKeyWords
        }
        let temperatures = try backend.makeScratch(rowTemperatures, Shape(rows))
        let keys = try backend.makeScratch(rowKeys, Shape(rows, 2))
        let tokens = try backend.makeTensor(Shape(rows), .int32, in: .scratch)
        try backend.sampleTokens(stepLogits, temperatures: temperatures, keys: keys, into: tokens)
        try backend.synchronize()
        if sampledTokens.count < rows { sampledTokens = [Int32](repeating: 0, count: rows) }
        try sampledTokens.withUnsafeMutableBufferPointer {
            try backend.download(tokens, into: UnsafeMutableBufferPointer(rebasing: $0[0..<rows]))
        }
        return true
    }

    private func sample(_ request: ActiveRequest, _ row: UnsafeMutableBufferPointer<Float>,
                        into output: inout EngineOutput) -> Int {
        if request.request.keepsLogits { output.logits = Array(row) }
        let generated = request.sequence.generatedCount
        if generated < request.request.minTokens {
            for id in request.request.stopTokenIDs { row[id] = -.infinity }
        }
        let token = request.drawsByTemperature
            ? SeededValues.sample(UnsafeBufferPointer(row), temperature: request.request.sampling.temperature, key: request.drawKey)
            : request.sampler.sample(UnsafeBufferPointer(row))
        if let top = request.request.logprobCount {
            output.logprobs.append(Sampler.logprobs(UnsafeBufferPointer(row), tokenID: token, top: top))
        }
        return token
    }

    /// The engine's figures now; the step count and time come from whoever drives the steps.
    public func statistics(stepCount: Int, lastStepSeconds: Double) -> EngineStatistics {
        var figures = EngineStatistics(blockCount: scheduler.allocator.blockCount)
        figures.stepCount = stepCount
        figures.lastStepSeconds = lastStepSeconds
        figures.runningCount = scheduler.running.count
        figures.waitingCount = scheduler.waitingCount
        figures.usedBlocks = scheduler.allocator.usedCount
        figures.preemptionCount = scheduler.preemptionCount
        figures.prefixQueryTokens = scheduler.prefixQueryTokens
        figures.prefixHitTokens = scheduler.prefixHitTokens
        figures.generatedTokenCount = generatedTokenCount
        figures.finishedRequestCount = finishedRequestCount
        figures.exchangedBytes = expertDispatch?.exchangedBytes ?? 0
        figures.exchangeSeconds = expertDispatch?.exchangeSeconds ?? 0
        return figures
    }

    private func finish(_ request: ActiveRequest, _ output: EngineOutput) {
        finishedRequestCount += 1
        scheduler.remove(request.sequence)
        let tag = request.sequence.tag
        active[tag] = nil
        freeTags.append(tag)
        tagByID[request.request.id] = nil
        request.sink(output)
    }

    private func validate(_ request: EngineRequest) -> String? {
        let vocabulary = model.vocabularySize, limit = scheduler.configuration.maxModelLength
        if tagByID[request.id] != nil { return "request id \(request.id) is already running" }
        if request.promptTokenIDs.isEmpty { return "the prompt has no tokens" }
        if let bad = request.promptTokenIDs.first(where: { $0 < 0 || $0 >= vocabulary }) {
            return "token id \(bad) is outside the vocabulary (0..<\(vocabulary))"
        }
        if let bad = request.stopTokenIDs.first(where: { $0 < 0 || $0 >= vocabulary }) {
            return "stop token id \(bad) is outside the vocabulary (0..<\(vocabulary))"
        }
        if request.promptTokenIDs.count >= limit {
            return "the prompt has \(request.promptTokenIDs.count) tokens; the model length \(limit) leaves no room to generate"
        }
        if request.maxTokens < 1 { return "max tokens must be at least 1" }
        if let top = request.logprobCount, top < 0 || top > vocabulary { return "logprobs must be in 0...\(vocabulary)" }
        if let top = request.promptLogprobCount, top < 0 || top > vocabulary { return "prompt logprobs must be in 0...\(vocabulary)" }
        return nil
    }
}

public enum EngineError: Error, CustomStringConvertible, Equatable {
    case cacheTooSmall(tokens: Int, maxModelLength: Int)
    case modelLengthBeyondPositions(Int, positions: Int)

    public var description: String {
        switch self {
        case .cacheTooSmall(let tokens, let length):
            "the KV cache holds \(tokens) tokens, fewer than one sequence of the model length \(length); "
                + "give it more memory (--gpu-memory-utilization, --kv-cache-memory-bytes) or lower --max-model-len"
        case .modelLengthBeyondPositions(let length, let positions):
            "--max-model-len \(length) is beyond the model's \(positions) positions"
        }
    }
}

/// Where a step's logit rows of one chunk are: prompt rows first (for prompt log-probabilities),
/// then the sampled row, if the chunk samples.
private struct RowPlan {
    var firstPromptRow: Int
    var promptRowCount: Int
    var firstPromptToken: Int
    var sampleRow: Int?

    init(firstPromptRow: Int, promptRowCount: Int, firstPromptToken: Int, sampleRow: Int?) {
        self.firstPromptRow = firstPromptRow
        self.promptRowCount = promptRowCount
        self.firstPromptToken = firstPromptToken
        self.sampleRow = sampleRow
    }

    /// The rows `chunk` (whose tokens start at input row `firstToken`) needs, appended to `logitRows`.
    init(_ chunk: ScheduledChunk, request: ActiveRequest, firstToken: Int, logitRows: inout [Int32]) {
        self.init(firstPromptRow: logitRows.count, promptRowCount: 0, firstPromptToken: 0, sampleRow: nil)
        if request.request.promptLogprobCount != nil {
            // The logits at position p score prompt token p + 1; skip what an earlier pass already reported.
            let first = max(chunk.start, request.nextPromptLogprob - 1)
            let last = min(chunk.start + chunk.count, chunk.sequence.promptCount - 1)
            if first < last {
                firstPromptToken = first + 1
                promptRowCount = last - first
                for position in first..<last { logitRows.append(Int32(firstToken + position - chunk.start)) }
            }
        }
        if chunk.samples {
            sampleRow = logitRows.count
            logitRows.append(Int32(firstToken + chunk.count - 1))
        }
    }
}

/// Engine-side state of one request. Owned by the engine's thread.
private final class ActiveRequest {
    let request: EngineRequest
    let sequence: SequenceState
    var sampler: Sampler
    let sink: (EngineOutput) -> Void
    /// The request's seed, or a random one: draws by temperature are functions of it.
    let seed: UInt64
    /// The first prompt token (index ≥ 1) whose log-probability has not been reported.
    var nextPromptLogprob = 1

    init(request: EngineRequest, sequence: SequenceState, sink: @escaping (EngineOutput) -> Void) {
        self.request = request
        self.sequence = sequence
        self.sink = sink
        sampler = Sampler(request.sampling)
        seed = request.sampling.seed ?? UInt64.random(in: .min ... .max)
    }

    /// A linear scan: stop lists hold a handful of ids.
    func isStop(_ token: Int) -> Bool { request.stopTokenIDs.contains(token) }

    /// Greedy, or a draw by temperature alone: the Gumbel draw of `SeededValues.sample`, which a
    /// backend can make where the logits are. Top-k and top-p go through the host `Sampler`.
    var drawsByTemperature: Bool { request.sampling.topK == nil && request.sampling.topP >= 1 }

    /// Whether this step's token can be drawn on the backend: nothing needs the logits on the host.
    var drawsByTemperatureNow: Bool {
        drawsByTemperature && request.logprobCount == nil && !request.keepsLogits
            && (sequence.generatedCount >= request.minTokens || request.stopTokenIDs.isEmpty)
    }

    /// The key of this step's draw: the seed and the count of tokens generated so far.
    var drawKey: UInt64 { SeededValues.samplingKey(seed: seed, step: sequence.generatedCount) }

    /// ``drawKey`` as `sampleTokens` takes it: two int32 words, the low one first.
    var drawKeyWords: (low: Int32, high: Int32) {
        let key = drawKey
        return (Int32(bitPattern: UInt32(truncatingIfNeeded: key)), Int32(bitPattern: UInt32(truncatingIfNeeded: key >> 32)))
    }
}
