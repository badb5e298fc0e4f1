#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
public import Compute

extension CPUBackend {
    public func headMatmul(_ x: Tensor, columns inputColumns: HeadColumns, weight: Tensor, into out: Tensor,
                           columns outputColumns: HeadColumns) throws {
        guard weight.shape.rank == 3 else {
            throw ComputeError.shapeMismatch(operation: "headMatmul", detail: "weight \(weight.shape) is not [heads, n, k]")
        }
        let rows = x.shape[0], heads = weight.shape[0], outputs = weight.shape[1], inputs = weight.shape[2]
        let inputWidth = x.shape.rowWidth, outputWidth = out.shape.rowWidth
        guard inputColumns.width == inputs, outputColumns.width == outputs, out.shape[0] == rows,
              inputColumns.offset + (heads - 1) * inputColumns.stride + inputs <= inputWidth,
              outputColumns.offset + (heads - 1) * outputColumns.stride + outputs <= outputWidth else {
            throw ComputeError.shapeMismatch(operation: "headMatmul", detail: "x \(x.shape), weight \(weight.shape), out \(out.shape)")
        }
        let (chunkCount, chunkSize) = rowChunks(rows * heads, minimumChunk: 1)
        parallelFor(chunkCount) { chunk in
            for item in (chunk * chunkSize)..<min(rows * heads, (chunk + 1) * chunkSize) {
                let row = item / heads, head = item % heads
                let source = x.floats + row * inputWidth + inputColumns.offset + head * inputColumns.stride
                let target = out.floats + row * outputWidth + outputColumns.offset + head * outputColumns.stride
                let matrix = weight.floats + head * outputs * inputs
                for output in 0..<outputs { target[output] = VectorMath.dot(source, matrix + output * inputs, count: inputs) }
            }
        }
    }

    public func prepareLatentAttention(queries: Tensor, latent: Tensor, norm: Tensor, epsilon: Float, table: RotaryTable,
                                       parameters: LatentAttentionParameters, cache: LayerKVCache, batch: AttentionBatch,
                                       into latentQueries: Tensor) throws {
        let heads = parameters.headCount, rope = parameters.ropeWidth, width = parameters.cacheWidth
        let latentWidth = parameters.latentWidth, queryWidth = parameters.nopeWidth + rope
        let tokenCount = batch.tokenCount
        guard latent.shape[0] == tokenCount, latent.shape.rowWidth == width, norm.elementCount == latentWidth,
              queries.shape.rowWidth == heads * queryWidth, latentQueries.shape.rowWidth == heads * width,
              cache.keys.shape.rowWidth == cache.blockSize * width, table.rotaryDim == rope else {
            throw ComputeError.shapeMismatch(operation: "prepareLatentAttention",
                                             detail: "q \(queries.shape), latent \(latent.shape), cache \(cache.keys.shape), rotary \(table.rotaryDim)")
        }
        let slotCount = cache.blockCount * cache.blockSize, half = rope / 2
        for token in 0..<tokenCount {
            let position = Int(batch.positions.integers[token])
            guard position < table.positionCount else {
                throw ComputeError.positionOutOfRange(position: position, limit: table.positionCount)
            }
            let slot = Int(batch.slotMapping.integers[token])
            precondition(slot >= 0 && slot < slotCount, "KV slot \(slot) outside the cache of \(slotCount)")
            let source = latent.floats + token * width, row = cache.keys.floats + slot * width
            let scale = 1 / sqrtf(VectorMath.sumOfSquares(source, count: latentWidth) / Float(latentWidth) + epsilon)
            for index in 0..<latentWidth { row[index] = norm.floats[index] * (source[index] * scale) }
            let cosines = table.cos.floats + position * half, sines = table.sin.floats + position * half
            Self.rotate(source + latentWidth, into: row + latentWidth, half: half, cosines: cosines, sines: sines)
            for head in 0..<heads {
                Self.rotate(queries.floats + token * heads * queryWidth + head * queryWidth + parameters.nopeWidth,
                            into: latentQueries.floats + token * heads * width + head * width + latentWidth,
                            half: half, cosines: cosines, sines: sines)
            }
        }
    }

    /// The "rotate half" rotation of one vector of `2 · half` values (the same arithmetic as ``rotary``).
    @inline(__always)
    private static func rotate(_ source: UnsafePointer<Float>, into target: UnsafeMutablePointer<Float>, half: Int,
                               cosines: UnsafePointer<Float>, sines: UnsafePointer<Float>) {
        for index in 0..<half {
            let first = source[index], second = source[index + half]
            target[index] = first * cosines[index] + (-second) * sines[index]
            target[index + half] = second * cosines[index] + first * sines[index]
        }
    }

    /// One work item per (token, head), each reading its request's rows in position order, as ``attention``.
    public func latentAttention(_ latentQueries: Tensor, cache: LayerKVCache, batch: AttentionBatch,
                                parameters: LatentAttentionParameters, into out: Tensor) throws {
        let heads = parameters.headCount, width = parameters.cacheWidth, latentWidth = parameters.latentWidth
        guard latentQueries.shape.rowWidth == heads * width, out.shape.rowWidth == heads * latentWidth,
              cache.keys.shape.rowWidth == cache.blockSize * width else {
            throw ComputeError.shapeMismatch(operation: "latentAttention", detail: "q \(latentQueries.shape), cache \(cache.keys.shape)")
        }
        let tokenCount = batch.tokenCount
        var longest = 0
        for token in 0..<tokenCount { longest = max(longest, Int(batch.positions.integers[token]) + 1) }
        reserveScoreBuffers(longest)
        let blockSize = cache.blockSize, tableWidth = batch.blockTables.shape.rowWidth
        let itemCount = tokenCount * heads
        let (chunkCount, chunkSize) = rowChunks(itemCount, minimumChunk: 1)
        let buffers = scoreBuffers
        parallelFor(chunkCount) { chunk in
            let scores = buffers[chunk]
            for item in (chunk * chunkSize)..<min(itemCount, (chunk + 1) * chunkSize) {
                let token = item / heads, head = item % heads
                let position = Int(batch.positions.integers[token])
                let table = batch.blockTables.integers + Int(batch.tokenRequests.integers[token]) * tableWidth
                Self.attend(latentQueries.floats + (token * heads + head) * width, keys: cache.keys.floats, values: cache.keys.floats,
                            rowStride: width, keyWidth: width, valueWidth: latentWidth, positions: 0...position, table: table,
                            blockSize: blockSize, scale: parameters.scale, sink: nil, scores: scores,
                            into: out.floats + (token * heads + head) * latentWidth)
            }
        }
    }
}
