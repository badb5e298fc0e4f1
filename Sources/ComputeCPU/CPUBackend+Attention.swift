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
                let sink = parameters.sinks?.floats[head]
                var maximum = sink ?? -Float.infinity
                for key in first...position {
                    let slot = Int(table[key / blockSize]) * blockSize + key % blockSize
                    let score = VectorMath.dot(query, cache.keys.floats + slot * kvWidth + kvOffset, count: headDim) * parameters.scale
                    scores[key - first] = score
                    maximum = max(maximum, score)
                }
                // A sink joins the denominator only (GPT-OSS).
                var total: Float = sink.map { expf($0 - maximum) } ?? 0
                for index in 0...(position - first) {
                    let weight = expf(scores[index] - maximum)
                    scores[index] = weight
                    total += weight
                }
                let target = out.floats + token * heads * headDim + head * headDim
                target.update(repeating: 0, count: headDim)
                let inverse = 1 / total
                for key in first...position {
                    let slot = Int(table[key / blockSize]) * blockSize + key % blockSize
                    VectorMath.addScaled(cache.values.floats + slot * kvWidth + kvOffset, alpha: scores[key - first] * inverse,
                                         into: target, count: headDim)
                }
            }
        }
    }
}
