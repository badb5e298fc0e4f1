public import Compute

extension Tensor {
    var device: UInt64 { UInt64(address) }
}

private func blocks(_ count: Int, of size: Int) -> UInt32 { UInt32((count + size - 1) / size) }

/// Blocks for a grid-stride loop over `count` elements: enough to fill the GPU, no more.
private func strideBlocks(_ count: Int) -> UInt32 { UInt32(min(max((count + 255) / 256, 1), 65_536)) }

extension CUDABackend {
    private func requireBF16(_ operation: String, _ tensors: Tensor...) throws {
        for tensor in tensors where tensor.dtype != .bfloat16 {
            throw ComputeError.unsupportedDType(operation: operation, tensor.dtype)
        }
    }

    public func fillUniform(_ tensor: Tensor, seed: UInt64, bound: Float) throws {
        try requireBF16("fillUniform", tensor)
        try kernels.fillUniform.launch(grid: (strideBlocks(tensor.elementCount), 1, 1), block: 256,
                                       .pointer(tensor.device), .int64(Int64(tensor.elementCount)),
                                       .int64(Int64(bitPattern: seed)), .float(bound))
    }

    public func fill(_ tensor: Tensor, value: Float) throws {
        try requireBF16("fill", tensor)
        try kernels.fillValue.launch(grid: (strideBlocks(tensor.elementCount), 1, 1), block: 256,
                                     .pointer(tensor.device), .int64(Int64(tensor.elementCount)), .float(value))
    }

    public func embedding(_ ids: Tensor, table: Tensor, into out: Tensor) throws {
        try requireBF16("embedding", table, out)
        try kernels.embedding.launch(grid: (UInt32(ids.elementCount), 1, 1), block: 256,
                                     .pointer(ids.device), .pointer(table.device), .pointer(out.device), .int32(Int32(table.shape[1])))
    }

    /// Up to 4 rows: linear_rows (weights read once at near the copy bandwidth, the bias in the
    /// same launch). More: cuBLAS in column-major terms, outᵀ [n, t] = W [n, k] · xᵀ, i.e.
    /// op(A) = Aᵀ with A = the row-major weight read as column-major [k, n]. Output bf16, or
    /// float32 for logits.
    public func matmul(_ x: Tensor, weight: Tensor, bias: Tensor?, into out: Tensor) throws {
        let tokens = x.shape[0], inner = x.shape.rowWidth, outputs = weight.shape[0]
        guard weight.shape.rowWidth == inner, out.shape[0] == tokens, out.shape.rowWidth == outputs,
              bias.map({ $0.elementCount == outputs }) ?? true else {
            throw ComputeError.shapeMismatch(operation: "matmul", detail: "x \(x.shape), weight \(weight.shape), out \(out.shape)")
        }
        try requireBF16("matmul", x, weight)
        guard tokens > 0 else { return }
        if let bias { try requireBF16("matmul bias", bias, out) }
        if tokens <= Self.linearRowsLimit && inner % 8 == 0 {
            let single = Projection(weight: weight, bias: bias, out: out)
            try linearRows(x, single, nil, nil, columns: outputs)
            return
        }
        if let profiler {
            try profiler.time("cublasGemmEx \(outputs)×\(inner)", stream: stream) {
                try gemm(x, weight: weight, into: out, tokens: tokens, inner: inner, outputs: outputs)
            }
        } else {
            try gemm(x, weight: weight, into: out, tokens: tokens, inner: inner, outputs: outputs)
        }
        if let bias {
            try kernels.addBias.launch(grid: (blocks(tokens * outputs, of: 256), 1, 1), block: 256,
                                       .pointer(out.device), .pointer(bias.device), .int64(Int64(tokens)), .int32(Int32(outputs)))
        }
    }

    /// Rows up to which `matmul` and `matmuls` use linear_rows.
    static let linearRowsLimit = 4

    /// q, k and v of a decode step of a few tokens in one launch; otherwise three `matmul`s.
    public func matmuls(_ x: Tensor, _ first: Projection, _ second: Projection, _ third: Projection) throws {
        let tokens = x.shape[0], inner = x.shape.rowWidth
        func fits(_ projection: Projection) -> Bool {
            let columns = projection.weight.shape[0]
            return projection.weight.shape.rowWidth == inner && columns % 4 == 0 && projection.out.shape[0] == tokens
                && projection.out.shape.rowWidth == columns && projection.weight.dtype == .bfloat16
                && projection.out.dtype == .bfloat16 && (projection.bias.map { $0.elementCount == columns && $0.dtype == .bfloat16 } ?? true)
        }
        guard tokens > 0, tokens <= Self.linearRowsLimit, inner % 8 == 0, x.dtype == .bfloat16,
              fits(first), fits(second), fits(third) else {
            try matmul(x, weight: first.weight, bias: first.bias, into: first.out)
            try matmul(x, weight: second.weight, bias: second.bias, into: second.out)
            try matmul(x, weight: third.weight, bias: third.bias, into: third.out)
            return
        }
        try linearRows(x, first, second, third,
                       columns: first.weight.shape[0] + second.weight.shape[0] + third.weight.shape[0])
    }

    private func linearRows(_ x: Tensor, _ first: Projection, _ second: Projection?, _ third: Projection?, columns: Int) throws {
        let tokens = x.shape[0]
        try kernels.linearRows[tokens == 1 ? 0 : tokens == 2 ? 1 : 2].launch(
            grid: (blocks(columns, of: 4), 1, 1), block: 128,
            .pointer(x.device), .pointer(first.weight.device), .pointer(second?.weight.device ?? 0),
            .pointer(third?.weight.device ?? 0), .pointer(first.bias?.device ?? 0), .pointer(second?.bias?.device ?? 0),
            .pointer(third?.bias?.device ?? 0), .pointer(first.out.device), .pointer(second?.out.device ?? 0),
            .pointer(third?.out.device ?? 0), .int32(Int32(first.weight.shape[0])), .int32(Int32(second?.weight.shape[0] ?? 0)),
            .int32(Int32(third?.weight.shape[0] ?? 0)), .int32(first.out.dtype == .float32 ? 1 : 0), .int32(Int32(tokens)),
            .int32(Int32(x.shape.rowWidth)))
    }

    private func gemm(_ x: Tensor, weight: Tensor, into out: Tensor, tokens: Int, inner: Int, outputs: Int) throws {
        try gemm(x: x.device, weight: weight.device, out: out.device, outType: out.dtype == .float32 ? CUBLASConstant.float32 : CUBLASConstant.bfloat16,
                 tokens: tokens, inner: inner, outputs: outputs)
    }

    /// `handle`: a lane's (``BLASLanes``), or the backend's own.
    private func gemm(x: UInt64, weight: UInt64, out: UInt64, outType: Int32, tokens: Int, inner: Int, outputs: Int,
                      handle: OpaquePointer? = nil) throws {
        var alpha: Float = 1, beta: Float = 0
        try blas.check(blas.cublasGemmEx(handle ?? blasHandle, CUBLASConstant.operationTranspose, CUBLASConstant.operationNone,
                                         Int32(outputs), Int32(tokens), Int32(inner), &alpha,
                                         weight, CUBLASConstant.bfloat16, Int32(inner),
                                         x, CUBLASConstant.bfloat16, Int32(inner), &beta,
                                         out, outType, Int32(outputs), CUBLASConstant.compute32F, CUBLASConstant.defaultAlgorithm),
                       "cublasGemmEx(\(tokens)×\(inner)·\(outputs))")
    }

    public func rmsNorm(_ x: Tensor, weight: Tensor, epsilon: Float, into out: Tensor) throws {
        try requireBF16("rmsNorm", x, weight, out)
        let width = weight.elementCount
        try kernels.rmsNorm.launch(
            grid: (UInt32(x.elementCount / width), 1, 1), block: Self.normBlock(width),
            .pointer(x.device), .pointer(weight.device), .pointer(out.device), .int32(Int32(width)), .float(epsilon))
    }

    public func addRMSNorm(_ a: Tensor, _ b: Tensor, weight: Tensor, epsilon: Float, sum: Tensor, normed: Tensor) throws {
        try requireBF16("addRMSNorm", a, b, weight, sum, normed)
        let width = weight.elementCount
        guard a.elementCount % width == 0, b.elementCount == a.elementCount, sum.elementCount == a.elementCount,
              normed.elementCount == a.elementCount else {
            throw ComputeError.shapeMismatch(operation: "addRMSNorm",
                                             detail: "\(a.shape) + \(b.shape) into \(sum.shape), weight \(weight.shape), normed \(normed.shape)")
        }
        try kernels.addRMSNorm.launch(
            grid: (UInt32(a.elementCount / width), 1, 1), block: Self.normBlock(width),
            .pointer(a.device), .pointer(b.device), .pointer(weight.device), .pointer(sum.device), .pointer(normed.device),
            .int32(Int32(width)), .float(epsilon))
    }

    /// Threads per row of a norm: add_rms_norm must use rms_norm's, for the same summation order.
    static func normBlock(_ width: Int) -> UInt32 { width >= 256 ? 256 : 32 * UInt32((width + 31) / 32) }

    public func rotary(_ x: Tensor, positions: Tensor, table: RotaryTable, headDim: Int) throws {
        try requireBF16("rotary", x)
        try kernels.rotary.launch(
            grid: (UInt32(x.shape[0]), 1, 1), block: 128,
            .pointer(x.device), .pointer(positions.device), .pointer(table.cos.device), .pointer(table.sin.device),
            .int32(Int32(x.shape.rowWidth)), .int32(Int32(headDim)), .int32(Int32(table.rotaryDim / 2)))
    }

    public func clamp(_ x: Tensor, limit: Float) throws {
        try requireBF16("clamp", x)
        try kernels.clamp.launch(grid: (blocks(x.elementCount, of: 256), 1, 1), block: 256,
                                 .pointer(x.device), .int64(Int64(x.elementCount)), .float(limit))
    }

    public func storeKV(keys: Tensor, values: Tensor, cache: LayerKVCache, batch: AttentionBatch) throws {
        try requireBF16("storeKV", keys, values, cache.keys, cache.values)
        try kernels.storeKV.launch(
            grid: (UInt32(batch.tokenCount), 1, 1), block: 128,
            .pointer(keys.device), .pointer(values.device), .pointer(batch.slotMapping.device),
            .pointer(cache.keys.device), .pointer(cache.values.device), .int32(Int32(keys.shape.rowWidth)))
    }

    public func prepareAttention(queries: Tensor, keys: Tensor, values: Tensor, norms: QueryKeyNorms?, table: RotaryTable,
                                 headDim: Int, cache: LayerKVCache, batch: AttentionBatch) throws {
        let tokens = queries.shape[0], heads = queries.shape.rowWidth / headDim, kvHeads = keys.shape.rowWidth / headDim
        guard headDim % 32 == 0, headDim <= 256, table.rotaryDim <= headDim, tokens == batch.tokenCount,
              norms.map({ $0.query.elementCount == headDim && $0.key.elementCount == headDim }) ?? true else {
            return try prepareAttentionInTurn(queries: queries, keys: keys, values: values, norms: norms, table: table,
                                              headDim: headDim, cache: cache, batch: batch)
        }
        try requireBF16("prepareAttention", queries, keys, values, cache.keys, cache.values)
        if let norms { try requireBF16("prepareAttention", norms.query, norms.key) }
        guard tokens > 0 else { return }
        try kernels.prepareAttention.launch(
            grid: (UInt32(tokens), UInt32(heads + 2 * kvHeads), 1), block: UInt32(headDim),
            .pointer(queries.device), .pointer(keys.device), .pointer(values.device), .pointer(norms?.query.device ?? 0),
            .pointer(norms?.key.device ?? 0), .float(norms?.epsilon ?? 0), .pointer(batch.positions.device),
            .pointer(table.cos.device), .pointer(table.sin.device), .int32(Int32(table.rotaryDim / 2)),
            .pointer(batch.slotMapping.device), .pointer(cache.keys.device), .pointer(cache.values.device),
            .int32(Int32(heads)), .int32(Int32(kvHeads)), .int32(Int32(headDim)))
    }

    public func attention(_ queries: Tensor, cache: LayerKVCache, batch: AttentionBatch,
                          parameters: AttentionParameters, into out: Tensor) throws {
        try requireBF16("attention", queries, cache.keys, out)
        if let sinks = parameters.sinks { try requireBF16("attention sinks", sinks) }
        guard parameters.headDim <= 128, parameters.headDim % 8 == 0 else {
            throw ComputeError.shapeMismatch(operation: "attention",
                                             detail: "the CUDA kernel takes head dims up to 128 in multiples of 8, got \(parameters.headDim)")
        }
        let tokens = batch.tokenCount
        guard tokens > 0 else { return }
        // A step's leading decodes (one token of their request each) run as a decode beside its
        // prefill rows: in the tensor-core kernel's tiles of 16 consecutive tokens, 16 decodes of
        // 16 requests would take 16 passes of one block.
        let decodes = min(batch.leadingDecodeRows, tokens), requests = batch.blockTables.shape[0]
        let rows = AttentionRows(queries: queries, out: out, positions: batch.positions, tokenRequests: batch.tokenRequests)
        if parameters.headDim % 16 == 0, tokens > decodes,
           tokens - decodes >= Self.prefillTokensPerRequest * (requests - decodes) {
            if decodes > 0 {
                try decodeAttention(rows.rows(0..<decodes), cache: cache, blockTables: batch.blockTables, parameters: parameters)
            }
            try prefillAttention(rows.rows(decodes..<tokens), cache: cache, blockTables: batch.blockTables, parameters: parameters)
        } else {
            try decodeAttention(rows, cache: cache, blockTables: batch.blockTables, parameters: parameters)
        }
    }

    /// The per-token tensors of some of a step's rows.
    private struct AttentionRows {
        let queries: Tensor, out: Tensor, positions: Tensor, tokenRequests: Tensor
        var count: Int { positions.elementCount }

        func rows(_ range: Range<Int>) -> AttentionRows {
            AttentionRows(queries: queries.rows(range), out: out.rows(range), positions: positions.rows(range),
                          tokenRequests: tokenRequests.rows(range))
        }
    }

    /// Heads per block: the largest divisor of the group size that fits one block of 8 warps.
    private func attentionHeadsPerBlock(_ parameters: AttentionParameters) -> Int {
        let group = parameters.headCount / parameters.kvHeadCount
        return (1...min(group, 8)).last { group % $0 == 0 }!
    }

    private func prefillAttention(_ rows: AttentionRows, cache: LayerKVCache, blockTables: Tensor,
                                  parameters: AttentionParameters) throws {
        let perBlock = attentionHeadsPerBlock(parameters), tokens = rows.count, headBlocks = parameters.headCount / perBlock
        let sinks = parameters.sinks?.device ?? 0
        // Fewer tiles than two per multiprocessor (a prompt's last tokens after a cached prefix,
        // a small chunk): each tile's keys split over blocks, at most `prefillPartialBytes` of partials.
        let tiles = Int(blocks(tokens, of: 16)) * headBlocks
        let rowBytes = tokens * parameters.headCount * (parameters.headDim + 2) * 4
        // The block table's width bounds every request's keys: a short fresh prompt is not split at all.
        let keysBound = blockTables.shape.rowWidth * cache.blockSize
        let splits = min(32, max(1, (2 * device.threadCount + tiles - 1) / tiles), max(1, Self.prefillPartialBytes / rowBytes),
                         max(1, keysBound / 64))
        let partial = splits > 1
            ? try makeTensor(Shape(tokens * parameters.headCount * splits, parameters.headDim + 2), .float32, in: .scratch) : nil
        try kernels.attentionPrefill.launch(
            grid: (blocks(tokens, of: 16), UInt32(headBlocks), UInt32(splits)), block: UInt32(32 * perBlock),
            sharedBytes: UInt32(CUDAKernels.prefillSharedBytes),
            .pointer(rows.queries.device), .pointer(cache.keys.device), .pointer(cache.values.device),
            .pointer(rows.positions.device), .pointer(rows.tokenRequests.device), .pointer(blockTables.device),
            .int32(Int32(blockTables.shape.rowWidth)), .pointer(rows.out.device), .int32(Int32(tokens)),
            .int32(Int32(parameters.headCount)), .int32(Int32(parameters.kvHeadCount)), .int32(Int32(parameters.headDim)),
            .int32(Int32(cache.blockSize)), .float(parameters.scale), .int32(Int32(parameters.slidingWindow ?? 0)),
            .int32(Int32(perBlock)), .pointer(sinks), .pointer(partial?.device ?? 0))
        if let partial { try mergeAttention(partial, rows: rows, splits: splits, parameters: parameters) }
    }

    private func decodeAttention(_ rows: AttentionRows, cache: LayerKVCache, blockTables: Tensor,
                                 parameters: AttentionParameters) throws {
        let group = parameters.headCount / parameters.kvHeadCount
        if group <= 16 && parameters.headDim % 16 == 0 {
            try groupedDecodeAttention(rows, cache: cache, blockTables: blockTables, parameters: parameters)
            return
        }
        let perBlock = attentionHeadsPerBlock(parameters), tokens = rows.count, headBlocks = parameters.headCount / perBlock
        // Few tokens (a decode step) fill few blocks: split each token's keys over enough blocks for
        // two per multiprocessor (up to 128 at batch 1, where a long context's keys are many), at
        // most `prefillPartialBytes` of partials. The split count depends on the token count alone,
        // so a recorded decode graph stays valid as contexts grow.
        let rowBytes = tokens * parameters.headCount * (parameters.headDim + 2) * 4
        let splits = min(128, max(1, (2 * device.threadCount + tokens * headBlocks - 1) / (tokens * headBlocks)),
                         max(1, Self.prefillPartialBytes / rowBytes))
        let partial = splits > 1
            ? try makeTensor(Shape(tokens * parameters.headCount * splits, parameters.headDim + 2), .float32, in: .scratch) : nil
        try kernels.attention.launch(
            grid: (UInt32(tokens), UInt32(headBlocks), UInt32(splits)), block: UInt32(32 * perBlock),
            .pointer(rows.queries.device), .pointer(cache.keys.device), .pointer(cache.values.device),
            .pointer(rows.positions.device), .pointer(rows.tokenRequests.device), .pointer(blockTables.device),
            .int32(Int32(blockTables.shape.rowWidth)), .pointer(rows.out.device),
            .int32(Int32(parameters.headCount)), .int32(Int32(parameters.kvHeadCount)), .int32(Int32(parameters.headDim)),
            .int32(Int32(cache.blockSize)), .float(parameters.scale), .int32(Int32(parameters.slidingWindow ?? 0)),
            .int32(Int32(perBlock)), .pointer(partial?.device ?? 0), .pointer(parameters.sinks?.device ?? 0))
        if let partial { try mergeAttention(partial, rows: rows, splits: splits, parameters: parameters) }
    }

    /// Decode on tensor cores, a KV head's query heads as the rows of one tile (attention_decode):
    /// every key is read once for the whole group.
    private func groupedDecodeAttention(_ rows: AttentionRows, cache: LayerKVCache, blockTables: Tensor,
                                        parameters: AttentionParameters) throws {
        let tokens = rows.count, kvHeads = parameters.kvHeadCount
        // Three blocks a multiprocessor (what their shared memory allows), at most 128 splits and
        // `prefillPartialBytes` of partials; by the token count alone, so graphs stay valid.
        let rowBytes = tokens * parameters.headCount * (parameters.headDim + 2) * 4
        let splits = min(128, max(1, (3 * device.threadCount + tokens * kvHeads - 1) / (tokens * kvHeads)),
                         max(1, Self.prefillPartialBytes / rowBytes))
        let partial = splits > 1
            ? try makeTensor(Shape(tokens * parameters.headCount * splits, parameters.headDim + 2), .float32, in: .scratch) : nil
        try kernels.attentionDecode.launch(
            grid: (UInt32(tokens), UInt32(kvHeads), UInt32(splits)), block: 128, sharedBytes: UInt32(CUDAKernels.prefillSharedBytes),
            .pointer(rows.queries.device), .pointer(cache.keys.device), .pointer(cache.values.device),
            .pointer(rows.positions.device), .pointer(rows.tokenRequests.device), .pointer(blockTables.device),
            .int32(Int32(blockTables.shape.rowWidth)), .pointer(rows.out.device),
            .int32(Int32(parameters.headCount)), .int32(Int32(kvHeads)), .int32(Int32(parameters.headDim)),
            .int32(Int32(cache.blockSize)), .float(parameters.scale), .int32(Int32(parameters.slidingWindow ?? 0)),
            .pointer(partial?.device ?? 0), .pointer(parameters.sinks?.device ?? 0))
        if let partial { try mergeAttention(partial, rows: rows, splits: splits, parameters: parameters) }
    }

    private func mergeAttention(_ partial: Tensor, rows: AttentionRows, splits: Int, parameters: AttentionParameters) throws {
        try kernels.attentionMerge.launch(
            grid: (UInt32(rows.count), UInt32(parameters.headCount), 1), block: 128,
            .pointer(partial.device), .pointer(rows.out.device), .int32(Int32(parameters.headCount)),
            .int32(Int32(parameters.headDim)), .int32(Int32(splits)), .pointer(parameters.sinks?.device ?? 0))
    }

    /// cuBLAS's strided batched GEMM, one batch per head, in the column-major terms of ``gemm``:
    /// outₕᵀ [n, t] = Wₕ [n, k] · xₕᵀ, with xₕ and outₕ column slices of their rows.
    public func headMatmul(_ x: Tensor, columns inputColumns: HeadColumns, weight: Tensor, into out: Tensor,
                           columns outputColumns: HeadColumns) throws {
        try requireBF16("headMatmul", x, weight, out)
        guard weight.shape.rank == 3 else {
            throw ComputeError.shapeMismatch(operation: "headMatmul", detail: "weight \(weight.shape) is not [heads, n, k]")
        }
        let rows = x.shape[0], heads = weight.shape[0], outputs = weight.shape[1], inputs = weight.shape[2]
        guard inputColumns.width == inputs, outputColumns.width == outputs, out.shape[0] == rows,
              inputColumns.offset + (heads - 1) * inputColumns.stride + inputs <= x.shape.rowWidth,
              outputColumns.offset + (heads - 1) * outputColumns.stride + outputs <= out.shape.rowWidth else {
            throw ComputeError.shapeMismatch(operation: "headMatmul", detail: "x \(x.shape), weight \(weight.shape), out \(out.shape)")
        }
        guard rows > 0 else { return }
        var alpha: Float = 1, beta: Float = 0
        try blas.check(blas.cublasGemmStridedBatchedEx(
            blasHandle, CUBLASConstant.operationTranspose, CUBLASConstant.operationNone, Int32(outputs), Int32(rows), Int32(inputs), &alpha,
            weight.device, CUBLASConstant.bfloat16, Int32(inputs), Int64(outputs * inputs),
            x.device + UInt64(inputColumns.offset * 2), CUBLASConstant.bfloat16, Int32(x.shape.rowWidth), Int64(inputColumns.stride), &beta,
            out.device + UInt64(outputColumns.offset * 2), CUBLASConstant.bfloat16, Int32(out.shape.rowWidth), Int64(outputColumns.stride),
            Int32(heads), CUBLASConstant.compute32F, CUBLASConstant.defaultAlgorithm),
            "cublasGemmStridedBatchedEx(\(heads) × \(rows)×\(inputs)·\(outputs))")
    }

    public func prepareLatentAttention(queries: Tensor, latent: Tensor, norm: Tensor, epsilon: Float, table: RotaryTable,
                                       parameters: LatentAttentionParameters, cache: LayerKVCache, batch: AttentionBatch,
                                       into latentQueries: Tensor) throws {
        try requireBF16("prepareLatentAttention", queries, latent, norm, cache.keys, latentQueries)
        let heads = parameters.headCount, width = parameters.cacheWidth, tokens = batch.tokenCount
        guard latent.shape[0] == tokens, latent.shape.rowWidth == width, norm.elementCount == parameters.latentWidth,
              queries.shape.rowWidth == heads * (parameters.nopeWidth + parameters.ropeWidth),
              latentQueries.shape.rowWidth == heads * width, cache.keys.shape.rowWidth == cache.blockSize * width,
              table.rotaryDim == parameters.ropeWidth else {
            throw ComputeError.shapeMismatch(operation: "prepareLatentAttention",
                                             detail: "q \(queries.shape), latent \(latent.shape), cache \(cache.keys.shape), rotary \(table.rotaryDim)")
        }
        guard tokens > 0 else { return }
        try kernels.prepareLatentAttention.launch(
            grid: (UInt32(tokens), UInt32(heads + 1), 1), block: 256,
            .pointer(queries.device), .pointer(latent.device), .pointer(norm.device), .float(epsilon), .pointer(batch.positions.device),
            .pointer(table.cos.device), .pointer(table.sin.device), .pointer(batch.slotMapping.device), .pointer(cache.keys.device),
            .pointer(latentQueries.device), .int32(Int32(heads)), .int32(Int32(parameters.nopeWidth)),
            .int32(Int32(parameters.ropeWidth)), .int32(Int32(parameters.latentWidth)))
    }

    public func latentAttention(_ latentQueries: Tensor, cache: LayerKVCache, batch: AttentionBatch,
                                parameters: LatentAttentionParameters, into out: Tensor) throws {
        try requireBF16("latentAttention", latentQueries, cache.keys, out)
        let heads = parameters.headCount, width = parameters.cacheWidth, latent = parameters.latentWidth
        guard width % 8 == 0, width <= 576, latent <= 512, latentQueries.shape.rowWidth == heads * width,
              out.shape.rowWidth == heads * latent, cache.keys.shape.rowWidth == cache.blockSize * width else {
            throw ComputeError.shapeMismatch(operation: "latentAttention",
                                             detail: "the CUDA kernel takes rows of up to 576 in multiples of 8 and latents up to 512, got \(width) and \(latent)")
        }
        let perBlock = (1...min(heads, 8)).last { heads % $0 == 0 }!
        let tokens = batch.tokenCount, headBlocks = heads / perBlock
        guard tokens > 0 else { return }
        // As attention's: splits from the token count alone, so recorded decode graphs stay valid.
        let splits = min(32, max(1, (2 * device.threadCount + tokens * headBlocks - 1) / (tokens * headBlocks)))
        let partial = splits > 1 ? try makeTensor(Shape(tokens * heads * splits, latent + 2), .float32, in: .scratch) : nil
        try kernels.latentAttention.launch(
            grid: (UInt32(tokens), UInt32(headBlocks), UInt32(splits)), block: UInt32(32 * perBlock),
            .pointer(latentQueries.device), .pointer(cache.keys.device), .pointer(batch.positions.device),
            .pointer(batch.tokenRequests.device), .pointer(batch.blockTables.device), .int32(Int32(batch.blockTables.shape.rowWidth)),
            .pointer(out.device), .int32(Int32(heads)), .int32(Int32(latent)), .int32(Int32(width)), .int32(Int32(cache.blockSize)),
            .float(parameters.scale), .int32(Int32(perBlock)), .pointer(partial?.device ?? 0))
        if let partial {
            try kernels.attentionMerge.launch(
                grid: (UInt32(tokens), UInt32(heads), 1), block: UInt32((latent + 31) / 32 * 32),
                .pointer(partial.device), .pointer(out.device), .int32(Int32(heads)), .int32(Int32(latent)), .int32(Int32(splits)),
                .pointer(0))
        }
    }

    /// Tokens per request, on average, from which a step's attention runs on tensor cores over
    /// tiles of 16 tokens (attention_prefill): a decode step (one token per request) keeps the
    /// kernel that splits each token's keys over blocks.
    static let prefillTokensPerRequest = 4

    /// The most scratch the split prefill attention's partial results may take.
    static let prefillPartialBytes = 32 << 20

    public func routeTopK(_ logits: Tensor, bias: Tensor?, parameters: RoutingParameters, into routing: Routing) throws {
        try requireBF16("routeTopK", logits)
        if let bias { try requireBF16("routeTopK bias", bias) }
        let tokens = logits.shape[0], experts = logits.shape.rowWidth
        guard experts <= 512, parameters.topK <= min(32, experts), bias.map({ $0.elementCount == experts }) ?? true else {
            throw ComputeError.shapeMismatch(operation: "routeTopK", detail: "at most 512 experts and top-32, got \(experts) and top-\(parameters.topK)")
        }
        let groups = parameters.groups
        if let groups {
            guard groups.count > 0, groups.count <= 32, experts % groups.count == 0, groups.selected <= groups.count,
                  groups.selected * (experts / groups.count) >= parameters.topK,
                  groups.score != .topTwoSum || experts / groups.count >= 2 else {
                throw ComputeError.shapeMismatch(operation: "routeTopK",
                                                 detail: "\(experts) experts in \(groups.count) groups (at most 32), \(groups.selected) chosen, top-\(parameters.topK)")
            }
        }
        guard tokens > 0 else { return }
        try kernels.routeTopK.launch(
            grid: (blocks(tokens, of: 8), 1, 1), block: 256,
            .pointer(logits.device), .pointer(bias?.device ?? 0), .pointer(routing.experts.device), .pointer(routing.weights.device),
            .int32(Int32(tokens)), .int32(Int32(experts)), .int32(Int32(parameters.topK)),
            .int32(parameters.isRenormalized ? 1 : 0), .int32(parameters.scoring == .sigmoid ? 1 : 0),
            .int32(Int32(groups?.count ?? 1)), .int32(Int32(groups?.selected ?? 1)), .int32(groups?.score == .topTwoSum ? 1 : 0),
            .float(parameters.scalingFactor))
    }

    /// A few assignments: matrix-vector kernels in assignment order, the combine inside the down
    /// projection's launch. Otherwise sort the assignments by expert, run each expert's rows
    /// through gate/up (with SiLU·mul) and down as grouped tensor-core GEMMs (or cuBLAS, for a
    /// big eager step), then combine each token's rows in pick order.
    public func expertMLP(_ x: Tensor, experts: ExpertWeights, routing: Routing, into out: Tensor) throws {
        let tokens = x.shape[0], topK = routing.topK, hidden = experts.hiddenSize, intermediate = experts.intermediateSize
        let expertCount = experts.expertCount, assignments = tokens * topK
        guard x.shape.rowWidth == hidden, out.shape[0] == tokens, out.shape.rowWidth == hidden, routing.experts.shape[0] == tokens else {
            throw ComputeError.shapeMismatch(operation: "expertMLP", detail: "x \(x.shape), experts \(experts.gateUp.shape), out \(out.shape)")
        }
        guard hidden % 8 == 0, intermediate % 8 == 0, expertCount <= 4096 else {
            throw ComputeError.shapeMismatch(operation: "expertMLP",
                                             detail: "the grouped GEMM needs hidden and intermediate sizes divisible by 8, got \(hidden) and \(intermediate)")
        }
        try requireBF16("expertMLP", x, experts.gateUp, experts.down, out)
        for bias in [experts.gateUpBias, experts.downBias].compactMap({ $0 }) { try requireBF16("expertMLP bias", bias) }
        let activation = experts.activationArguments
        guard assignments > 0 else { return }
        if assignments <= Self.gemvExpertRows && topK <= 32 {
            let activated = try makeTensor(Shape(assignments, intermediate), .bfloat16, in: .scratch)
            try kernels.expertGEMVGateUp.launch(
                grid: (UInt32(assignments), blocks(intermediate, of: 16), 1), block: 128,
                .pointer(x.device), .pointer(experts.gateUp.device), .pointer(routing.experts.device), .pointer(activated.device),
                .int32(Int32(expertCount)), .int32(Int32(topK)), .int32(Int32(hidden)), .int32(Int32(intermediate)),
                .pointer(experts.gateUpBias?.device ?? 0), .int32(activation.clamped ? 1 : 0), .float(activation.alpha),
                .float(activation.limit))
            try kernels.expertGEMVDownCombine.launch(
                grid: (UInt32(tokens), blocks(hidden, of: 4), 1), block: UInt32(32 * topK),
                .pointer(activated.device), .pointer(experts.down.device), .pointer(routing.experts.device),
                .pointer(routing.weights.device), .pointer(out.device), .int32(Int32(expertCount)), .int32(Int32(topK)),
                .int32(Int32(intermediate)), .int32(Int32(hidden)), .pointer(experts.downBias?.device ?? 0))
            return
        }
        let offsets = try makeTensor(Shape(expertCount + 1), .int32, in: .scratch)
        let sorted = try makeTensor(Shape(assignments), .int32, in: .scratch)
        let positions = try makeTensor(Shape(assignments), .int32, in: .scratch)
        let activated = try makeTensor(Shape(assignments, intermediate), .bfloat16, in: .scratch)
        let rows = try makeTensor(Shape(assignments, hidden), .bfloat16, in: .scratch)
        try kernels.sortAssignments.launch(
            grid: (1, 1, 1), block: 1024, sharedBytes: UInt32(8 * expertCount),
            .pointer(routing.experts.device), .int32(Int32(assignments)), .int32(Int32(expertCount)),
            .pointer(offsets.device), .pointer(sorted.device), .pointer(positions.device))
        // cuBLAS's path has no bias or clamped activation: GPT-OSS's experts take the grouped kernels.
        if !isCapturing, experts.isPlain, assignments >= Self.blasExpertRows * expertCount {
            try expertGEMMsWithBLAS(x, experts: experts, offsets: offsets, sorted: sorted, topK: topK, activated: activated, rows: rows)
        } else {
            try expertGEMMsGrouped(x, experts: experts, offsets: offsets, sorted: sorted, topK: topK, tokens: tokens,
                                   activated: activated, rows: rows)
        }
        try kernels.combine.launch(
            grid: (UInt32(tokens), 1, 1), block: 256,
            .pointer(rows.device), .pointer(positions.device), .pointer(routing.weights.device), .pointer(out.device),
            .int32(Int32(topK)), .int32(Int32(hidden)))
    }

    /// Rows per expert, on average, from which a step's experts run as one cuBLAS GEMM each: a
    /// prefill's hundreds of rows per expert are compute-bound, where cuBLAS's tiles beat the
    /// grouped kernel's, and each call's few microseconds of launch are hidden.
    static let blasExpertRows = 128

    /// Streams a prefill's expert GEMMs are dealt to, and the cuBLAS workspace of each.
    static let blasLaneCount = 4
    static let blasWorkspaceBytes = 32 << 20

    /// Assignments up to which a step's experts run as matrix-vector kernels, unsorted, with the
    /// combine in the down projection's launch (a decode step of up to 8 tokens at top-8): with a
    /// row or two per expert, reading each row's expert weights over every SM beats the grouped
    /// GEMM's mostly empty tiles, and the few experts two rows share are read twice mostly from L2.
    static let gemvExpertRows = 64

    /// One grouped kernel per GEMM over every expert: what decode steps (and graphs) use.
    private func expertGEMMsGrouped(_ x: Tensor, experts: ExpertWeights, offsets: Tensor, sorted: Tensor, topK: Int, tokens: Int,
                                    activated: Tensor, rows: Tensor) throws {
        let hidden = experts.hiddenSize, intermediate = experts.intermediateSize, expertCount = experts.expertCount
        let activation = experts.activationArguments
        // Row tiles of one expert spread over up to 8 blocks; an expert has at most `tokens` rows.
        let rowSplit = UInt32(min(max((tokens + 63) / 64, 1), 8))
        try kernels.expertGateUp.launch(
            grid: (blocks(intermediate, of: 64), UInt32(expertCount), rowSplit), block: 256,
            sharedBytes: UInt32(CUDAKernels.expertSharedBytes(gated: true)),
            .pointer(x.device), .pointer(experts.gateUp.device), .pointer(offsets.device), .pointer(sorted.device),
            .pointer(activated.device), .int32(Int32(topK)), .int32(Int32(hidden)), .int32(Int32(intermediate)),
            .pointer(experts.gateUpBias?.device ?? 0), .int32(activation.clamped ? 1 : 0), .float(activation.alpha),
            .float(activation.limit))
        try kernels.expertDown.launch(
            grid: (blocks(hidden, of: 64), UInt32(expertCount), rowSplit), block: 256,
            sharedBytes: UInt32(CUDAKernels.expertSharedBytes(gated: false)),
            .pointer(activated.device), .pointer(experts.down.device), .pointer(offsets.device), .pointer(rows.device),
            .int32(Int32(intermediate)), .int32(Int32(hidden)), .pointer(experts.downBias?.device ?? 0))
    }

    /// Each expert's rows through cuBLAS: the expert offsets come to the host (a wait, which an
    /// eager prefill step can afford), the assignments' tokens are gathered in expert order, and
    /// every expert with rows gets a gate/up GEMM, then SiLU·mul, then a down GEMM, the experts
    /// dealt in turn to `blasLaneCount` streams (one expert's GEMM fills a third of the GPU).
    private func expertGEMMsWithBLAS(_ x: Tensor, experts: ExpertWeights, offsets: Tensor, sorted: Tensor, topK: Int,
                                     activated: Tensor, rows: Tensor) throws {
        let hidden = experts.hiddenSize, intermediate = experts.intermediateSize, expertCount = experts.expertCount
        let assignments = sorted.elementCount
        if expertOffsets.count < expertCount + 1 { expertOffsets = [Int32](repeating: 0, count: expertCount + 1) }
        try expertOffsets.withUnsafeMutableBufferPointer { try download(offsets, into: $0) }
        let gathered = try makeTensor(Shape(assignments, hidden), .bfloat16, in: .scratch)
        let gateUp = try makeTensor(Shape(assignments, 2 * intermediate), .bfloat16, in: .scratch)
        try kernels.gatherAssignments.launch(
            grid: (UInt32(assignments), 1, 1), block: 128,
            .pointer(x.device), .pointer(sorted.device), .int32(Int32(topK)), .pointer(gathered.device), .int32(Int32(hidden)))
        let lanes = try blasLanes ?? BLASLanes(count: Self.blasLaneCount, backend: self, workspaceBytes: Self.blasWorkspaceBytes)
        blasLanes = lanes
        func perExpert(_ name: String, _ body: (_ expert: Int, _ begin: Int, _ count: Int, _ handle: OpaquePointer?) throws -> Void) throws {
            func work() throws {
                try lanes.fork(from: stream)
                do {
                    var dealt = 0
                    for expert in 0..<expertCount {
                        let begin = Int(expertOffsets[expert]), count = Int(expertOffsets[expert + 1]) - begin
                        guard count > 0 else { continue }
                        try body(expert, begin, count, lanes.lanes[dealt % lanes.lanes.count].handle)
                        dealt += 1
                    }
                } catch {
                    // What the lanes enqueued still reads the step's scratch: the stream waits for it.
                    try? lanes.join(into: stream)
                    throw error
                }
                try lanes.join(into: stream)
            }
            if let profiler { try profiler.time(name, stream: stream, work) } else { try work() }
        }
        try perExpert("cublasGemmEx experts gate/up") { expert, begin, count, handle in
            try gemm(x: gathered.device + UInt64(begin * hidden * 2),
                     weight: experts.gateUp.device + UInt64(expert * 2 * intermediate * hidden * 2),
                     out: gateUp.device + UInt64(begin * 2 * intermediate * 2), outType: CUBLASConstant.bfloat16,
                     tokens: count, inner: hidden, outputs: 2 * intermediate, handle: handle)
        }
        try siluMul(gateUp, into: activated)
        try perExpert("cublasGemmEx experts down") { expert, begin, count, handle in
            try gemm(x: activated.device + UInt64(begin * intermediate * 2),
                     weight: experts.down.device + UInt64(expert * hidden * intermediate * 2),
                     out: rows.device + UInt64(begin * hidden * 2), outType: CUBLASConstant.bfloat16,
                     tokens: count, inner: intermediate, outputs: hidden, handle: handle)
        }
    }

    public func combineExperts(_ rows: Tensor, weights: Tensor, into out: Tensor) throws {
        let tokens = out.shape[0], hidden = out.shape.rowWidth, topK = weights.shape.rowWidth
        guard weights.shape[0] == tokens, rows.shape[0] == tokens * topK, rows.shape.rowWidth == hidden else {
            throw ComputeError.shapeMismatch(operation: "combineExperts", detail: "rows \(rows.shape), weights \(weights.shape), out \(out.shape)")
        }
        try requireBF16("combineExperts", rows, out)
        guard tokens > 0 else { return }
        try kernels.combine.launch(
            grid: (UInt32(tokens), 1, 1), block: 256,
            .pointer(rows.device), .pointer(0), .pointer(weights.device), .pointer(out.device), .int32(Int32(topK)), .int32(Int32(hidden)))
    }

    public func siluMul(_ gateUp: Tensor, into out: Tensor) throws {
        try requireBF16("siluMul", gateUp, out)
        let rows = out.shape[0], width = out.shape.rowWidth
        try kernels.siluMul.launch(grid: (blocks(rows * width, of: 256), 1, 1), block: 256,
                                   .pointer(gateUp.device), .pointer(out.device), .int64(Int64(rows)), .int32(Int32(width)))
    }

    public func add(_ a: Tensor, _ b: Tensor, into out: Tensor) throws {
        try requireBF16("add", a, b, out)
        try kernels.add.launch(grid: (blocks(a.elementCount, of: 256), 1, 1), block: 256,
                               .pointer(a.device), .pointer(b.device), .pointer(out.device), .int64(Int64(a.elementCount)))
    }

    public func addSigmoidGated(_ y: Tensor, gate: Tensor, into out: Tensor) throws {
        try requireBF16("addSigmoidGated", y, gate, out)
        let rows = y.shape[0], width = y.shape.rowWidth
        try kernels.addSigmoidGated.launch(grid: (blocks(rows * width, of: 256), 1, 1), block: 256,
                                           .pointer(y.device), .pointer(gate.device), .pointer(out.device),
                                           .int64(Int64(rows)), .int32(Int32(width)))
    }

    public func gatherRows(_ x: Tensor, rows: Tensor, into out: Tensor) throws {
        try requireBF16("gatherRows", x, out)
        try kernels.gatherRows.launch(grid: (UInt32(rows.elementCount), 1, 1), block: 128,
                                      .pointer(x.device), .pointer(rows.device), .pointer(out.device), .int32(Int32(x.shape.rowWidth)))
    }

    public func sampleTokens(_ logits: Tensor, temperatures: Tensor, keys: Tensor, into tokens: Tensor) throws {
        let rows = logits.shape[0]
        guard logits.dtype == .float32, temperatures.elementCount == rows, keys.elementCount == 2 * rows, tokens.elementCount == rows else {
            throw ComputeError.shapeMismatch(operation: "sampleTokens",
                                             detail: "logits \(logits.shape), temperatures \(temperatures.shape), keys \(keys.shape), tokens \(tokens.shape)")
        }
        guard rows > 0 else { return }
        try kernels.sampleTokens.launch(grid: (UInt32(rows), 1, 1), block: 1024,
                                        .pointer(logits.device), .pointer(temperatures.device), .pointer(keys.device),
                                        .pointer(tokens.device), .int32(Int32(logits.shape.rowWidth)))
    }
}
