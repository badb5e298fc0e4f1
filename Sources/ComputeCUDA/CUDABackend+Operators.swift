public import Compute

extension Tensor {
    var device: UInt64 { UInt64(address) }
}

private func blocks(_ count: Int, of size: Int) -> UInt32 { UInt32((count + size - 1) / size) }

extension CUDABackend {
    private func weightKernel(_ variants: CUDAKernels.WeightVariants, for weight: Tensor) throws -> Kernel {
        switch weight.dtype {
        case .float32: return variants.f32
        case .bfloat16: return variants.bf16
        default: throw ComputeError.unsupportedDType(operation: variants.f32.name, weight.dtype)
        }
    }

    public func embedding(_ ids: Tensor, table: Tensor, into out: Tensor) throws {
        try weightKernel(kernels.embedding, for: table).launch(
            on: driver, grid: (UInt32(ids.elementCount), 1), block: 256,
            .pointer(ids.device), .pointer(table.device), .pointer(out.device), .int32(Int32(table.shape[1])))
    }

    public func matmul(_ x: Tensor, weight: Tensor, bias: Tensor?, into out: Tensor) throws {
        let tokens = x.shape[0], inner = x.shape.rowWidth, outputs = weight.shape[0]
        guard weight.shape.rowWidth == inner, out.shape[0] == tokens, out.shape.rowWidth == outputs else {
            throw ComputeError.shapeMismatch(operation: "matmul", detail: "x \(x.shape), weight \(weight.shape), out \(out.shape)")
        }
        if let bias, bias.dtype != weight.dtype {
            throw ComputeError.unsupportedDType(operation: "matmul bias (weight \(weight.dtype))", bias.dtype)
        }
        try weightKernel(kernels.matmul, for: weight).launch(
            on: driver, grid: (blocks(outputs, of: 8), blocks(tokens, of: 8)), block: 256,
            .pointer(x.device), .pointer(weight.device), .pointer(bias?.device ?? 0), .pointer(out.device),
            .int32(Int32(tokens)), .int32(Int32(inner)), .int32(Int32(outputs)))
    }

    public func rmsNorm(_ x: Tensor, weight: Tensor, epsilon: Float, into out: Tensor) throws {
        let width = weight.elementCount
        try weightKernel(kernels.rmsNorm, for: weight).launch(
            on: driver, grid: (UInt32(x.elementCount / width), 1), block: width >= 256 ? 256 : 32 * UInt32((width + 31) / 32),
            .pointer(x.device), .pointer(weight.device), .pointer(out.device), .int32(Int32(width)), .float(epsilon))
    }

    public func rotary(_ x: Tensor, positions: Tensor, table: RotaryTable, headDim: Int) throws {
        try kernels.rotary.launch(
            on: driver, grid: (UInt32(x.shape[0]), 1), block: 128,
            .pointer(x.device), .pointer(positions.device), .pointer(table.cos.device), .pointer(table.sin.device),
            .int32(Int32(x.shape.rowWidth)), .int32(Int32(headDim)), .int32(Int32(table.rotaryDim / 2)))
    }

    public func clamp(_ x: Tensor, limit: Float) throws {
        try kernels.clamp.launch(on: driver, grid: (blocks(x.elementCount, of: 256), 1), block: 256,
                                 .pointer(x.device), .int64(Int64(x.elementCount)), .float(limit))
    }

    public func storeKV(keys: Tensor, values: Tensor, cache: LayerKVCache, batch: AttentionBatch) throws {
        try kernels.storeKV.launch(
            on: driver, grid: (UInt32(batch.tokenCount), 1), block: 128,
            .pointer(keys.device), .pointer(values.device), .pointer(batch.slotMapping.device),
            .pointer(cache.keys.device), .pointer(cache.values.device), .int32(Int32(keys.shape.rowWidth)))
    }

    public func attention(_ queries: Tensor, cache: LayerKVCache, batch: AttentionBatch,
                          parameters: AttentionParameters, into out: Tensor) throws {
        let tokens = batch.tokenCount, heads = parameters.headCount
        let maxContext = cache.blockCount * cache.blockSize
        let needed = tokens * heads * maxContext
        if needed > scoreBuffer.floatCount {
            let storage = try allocate(byteCount: needed * 4)
            scoreStorage = storage
            scoreBuffer = (UInt64(storage.address), needed)
        }
        try kernels.attention.launch(
            on: driver, grid: (blocks(tokens * heads, of: 4), 1), block: 128,
            .pointer(queries.device), .pointer(cache.keys.device), .pointer(cache.values.device),
            .pointer(batch.positions.device), .pointer(batch.tokenRequests.device), .pointer(batch.blockTables.device),
            .int32(Int32(batch.blockTables.shape.rowWidth)), .pointer(out.device), .pointer(scoreBuffer.address),
            .int32(Int32(maxContext)), .int32(Int32(tokens)), .int32(Int32(heads)), .int32(Int32(parameters.kvHeadCount)),
            .int32(Int32(parameters.headDim)), .int32(Int32(cache.blockSize)), .float(parameters.scale),
            .int32(Int32(parameters.slidingWindow ?? 0)))
    }

    public func routeTopK(_ logits: Tensor, parameters: RoutingParameters, into routing: Routing) throws {
        let tokens = logits.shape[0], experts = logits.shape.rowWidth
        guard experts <= 512 else { throw ComputeError.shapeMismatch(operation: "routeTopK", detail: "at most 512 experts, got \(experts)") }
        try kernels.routeTopK.launch(
            on: driver, grid: (blocks(tokens, of: 128), 1), block: 128,
            .pointer(logits.device), .pointer(routing.experts.device), .pointer(routing.weights.device),
            .int32(Int32(tokens)), .int32(Int32(experts)), .int32(Int32(parameters.topK)),
            .int32(parameters.isRenormalized ? 1 : 0))
    }

    public func expertMLP(_ x: Tensor, experts: ExpertWeights, routing: Routing, into out: Tensor) throws {
        let tokens = x.shape[0], topK = routing.topK, hidden = experts.hiddenSize, intermediate = experts.intermediateSize
        let assignments = tokens * topK
        guard assignments > 0 else { return }
        let gateUp = try makeTensor(Shape(assignments, 2 * intermediate), .float32, in: .scratch)
        let activated = try makeTensor(Shape(assignments, intermediate), .float32, in: .scratch)
        let expertOut = try makeTensor(Shape(assignments, hidden), .float32, in: .scratch)
        try weightKernel(kernels.expertUp, for: experts.gateUp).launch(
            on: driver, grid: (blocks(2 * intermediate, of: 8), UInt32(assignments)), block: 256,
            .pointer(x.device), .pointer(experts.gateUp.device), .pointer(routing.experts.device), .pointer(gateUp.device),
            .int32(Int32(topK)), .int32(Int32(hidden)), .int32(Int32(2 * intermediate)))
        try siluMul(gateUp, into: activated)
        try weightKernel(kernels.expertDown, for: experts.down).launch(
            on: driver, grid: (blocks(hidden, of: 8), UInt32(assignments)), block: 256,
            .pointer(activated.device), .pointer(experts.down.device), .pointer(routing.experts.device), .pointer(expertOut.device),
            .int32(Int32(hidden)), .int32(Int32(intermediate)))
        try kernels.combine.launch(
            on: driver, grid: (UInt32(tokens), 1), block: 128,
            .pointer(expertOut.device), .pointer(routing.weights.device), .pointer(out.device), .int32(Int32(topK)), .int32(Int32(hidden)))
    }

    public func combineExperts(_ rows: Tensor, weights: Tensor, into out: Tensor) throws {
        let tokens = out.shape[0], hidden = out.shape.rowWidth, topK = weights.shape.rowWidth
        guard weights.shape[0] == tokens, rows.shape[0] == tokens * topK, rows.shape.rowWidth == hidden else {
            throw ComputeError.shapeMismatch(operation: "combineExperts", detail: "rows \(rows.shape), weights \(weights.shape), out \(out.shape)")
        }
        guard tokens > 0 else { return }
        try kernels.combine.launch(
            on: driver, grid: (UInt32(tokens), 1), block: 128,
            .pointer(rows.device), .pointer(weights.device), .pointer(out.device), .int32(Int32(topK)), .int32(Int32(hidden)))
    }

    public func siluMul(_ gateUp: Tensor, into out: Tensor) throws {
        let rows = out.shape[0], width = out.shape.rowWidth
        try kernels.siluMul.launch(on: driver, grid: (blocks(rows * width, of: 256), 1), block: 256,
                                   .pointer(gateUp.device), .pointer(out.device), .int64(Int64(rows)), .int32(Int32(width)))
    }

    public func add(_ a: Tensor, _ b: Tensor, into out: Tensor) throws {
        try kernels.add.launch(on: driver, grid: (blocks(a.elementCount, of: 256), 1), block: 256,
                               .pointer(a.device), .pointer(b.device), .pointer(out.device), .int64(Int64(a.elementCount)))
    }

    public func addSigmoidGated(_ y: Tensor, gate: Tensor, into out: Tensor) throws {
        let rows = y.shape[0], width = y.shape.rowWidth
        try kernels.addSigmoidGated.launch(on: driver, grid: (blocks(rows * width, of: 256), 1), block: 256,
                                           .pointer(y.device), .pointer(gate.device), .pointer(out.device),
                                           .int64(Int64(rows)), .int32(Int32(width)))
    }

    public func gatherRows(_ x: Tensor, rows: Tensor, into out: Tensor) throws {
        try kernels.gatherRows.launch(on: driver, grid: (UInt32(rows.elementCount), 1), block: 128,
                                      .pointer(x.device), .pointer(rows.device), .pointer(out.device), .int32(Int32(x.shape.rowWidth)))
    }
}
