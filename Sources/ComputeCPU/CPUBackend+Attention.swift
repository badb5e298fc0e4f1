#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
public import Compute

extension CPUBackend {
    public func storeKV(keys: Tensor, values: Tensor, cache: LayerKVCache, batch: AttentionBatch) throws {
        let width = cache.keys.shape.rowWidth / cache.blockSize
        guard keys.shape.rowWidth == width, values.shape.rowWidth == width, keys.shape[0] == batch.tokenCount else {
            throw ComputeError.shapeMismatch(operation: "storeKV", detail: "keys \(keys.shape), cache \(cache.keys.shape)")
        }
        let slotCount = cache.blockCount * cache.blockSize
        for token in 0..<batch.tokenCount {
            let slot = Int(batch.slotMapping.integers[token])
            precondition(slot >= 0 && slot < slotCount, "KV slot \(slot) outside the cache of \(slotCount)")
            (cache.keys.floats + slot * width).update(from: keys.floats + token * width, count: width)
            (cache.values.floats + slot * width).update(from: values.floats + token * width, count: width)
        }
    }

    /// One work item per (token, head) range. Each query reads its request's keys in position
    /// order, whatever the batch, so prefill and cached decode give the same numbers.
    public func attention(_ queries: Tensor, cache: LayerKVCache, batch: AttentionBatch,
                          parameters: AttentionParameters, into out: Tensor) throws {
        let headDim = parameters.headDim, heads = parameters.headCount
        let kvWidth = parameters.kvHeadCount * headDim
        let groupSize = heads / parameters.kvHeadCount
        guard queries.shape.rowWidth == heads * headDim, out.elementCount == queries.elementCount,
              cache.keys.shape.rowWidth == cache.blockSize * kvWidth else {
            throw ComputeError.shapeMismatch(operation: "attention", detail: "q \(queries.shape), cache \(cache.keys.shape)")
        }
        let tokenCount = batch.tokenCount
        var longest = 0
        for token in 0..<tokenCount { longest = max(longest, Int(batch.positions.integers[token]) + 1) }
        reserveScoreBuffers(longest)
        let blockSize = cache.blockSize
        let tableWidth = batch.blockTables.shape.rowWidth
        let itemCount = tokenCount * heads
        let (chunkCount, chunkSize) = rowChunks(itemCount, minimumChunk: 1)
        let buffers = scoreBuffers
        parallelFor(chunkCount) { chunk in
            let scores = buffers[chunk]
            for item in (chunk * chunkSize)..<min(itemCount, (chunk + 1) * chunkSize) {
                let token = item / heads, head = item % heads
                let position = Int(batch.positions.integers[token])
                let table = batch.blockTables.integers + Int(batch.tokenRequests.integers[token]) * tableWidth
                let first = parameters.slidingWindow.map { max(0, position - $0 + 1) } ?? 0
                let query = queries.floats + token * heads * headDim + head * headDim
                let kvOffset = (head / groupSize) * headDim
                Self.attend(query, keys: cache.keys.floats + kvOffset, values: cache.values.floats + kvOffset, rowStride: kvWidth,
                            keyWidth: headDim, valueWidth: headDim, positions: first...position, table: table, blockSize: blockSize,
                            scale: parameters.scale, sink: parameters.sinks?.floats[head], scores: scores,
                            into: out.floats + token * heads * headDim + head * headDim)
            }
        }
    }

    /// One query against the cached rows of `positions` (read through the block table): softmax of
    /// the scaled scores, with a sink in the denominator when given (GPT-OSS), then the weighted
    /// sum of the rows' values into `target`. Keys and values of a row are `rowStride` apart from
    /// the next row's; they may be the same memory (latent attention reads its values from its keys).
    @inline(__always)
    static func attend(_ query: UnsafePointer<Float>, keys: UnsafePointer<Float>, values: UnsafePointer<Float>, rowStride: Int,
                       keyWidth: Int, valueWidth: Int, positions: ClosedRange<Int>, table: UnsafePointer<Int32>, blockSize: Int,
                       scale: Float, sink: Float?, scores: UnsafeMutablePointer<Float>, into target: UnsafeMutablePointer<Float>) {
        let first = positions.lowerBound
        var maximum = sink ?? -Float.infinity
        for key in positions {
            let slot = Int(table[key / blockSize]) * blockSize + key % blockSize
            let score = VectorMath.dot(query, keys + slot * rowStride, count: keyWidth) * scale
            scores[key - first] = score
            maximum = max(maximum, score)
        }
        var total: Float = sink.map { expf($0 - maximum) } ?? 0
        for index in 0...(positions.upperBound - first) {
            let weight = expf(scores[index] - maximum)
            scores[index] = weight
            total += weight
        }
        target.update(repeating: 0, count: valueWidth)
        let inverse = 1 / total
        for key in positions {
            let slot = Int(table[key / blockSize]) * blockSize + key % blockSize
            VectorMath.addScaled(values + slot * rowStride, alpha: scores[key - first] * inverse, into: target, count: valueWidth)
        }
    }
}
