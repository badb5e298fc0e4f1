public import Compute

extension CPUBackend {
    public func fillUniform(_ tensor: Tensor, seed: UInt64, bound: Float) throws {
        guard tensor.dtype == .float32 else { throw ComputeError.unsupportedDType(operation: "fillUniform", tensor.dtype) }
        let values = tensor.floats, count = tensor.elementCount
        let (chunkCount, chunkSize) = rowChunks(count, minimumChunk: 1 << 16)
        parallelFor(chunkCount) { chunk in
            for index in (chunk * chunkSize)..<min(count, (chunk + 1) * chunkSize) {
                values[index] = SeededValues.uniform(seed, index, bound: bound)
            }
        }
    }

    public func fill(_ tensor: Tensor, value: Float) throws {
        guard tensor.dtype == .float32 else { throw ComputeError.unsupportedDType(operation: "fill", tensor.dtype) }
        tensor.floats.update(repeating: value, count: tensor.elementCount)
    }

    public func sampleTokens(_ logits: Tensor, temperatures: Tensor, keys: Tensor, into tokens: Tensor) throws {
        let rows = logits.shape[0], vocabulary = logits.shape.rowWidth
        guard logits.dtype == .float32, temperatures.elementCount == rows, keys.elementCount == 2 * rows,
              tokens.elementCount == rows else {
            throw ComputeError.shapeMismatch(operation: "sampleTokens",
                                             detail: "logits \(logits.shape), temperatures \(temperatures.shape), keys \(keys.shape), tokens \(tokens.shape)")
        }
        let keyWords = keys.integers
        for row in 0..<rows {
            let key = UInt64(UInt32(bitPattern: keyWords[2 * row])) | UInt64(UInt32(bitPattern: keyWords[2 * row + 1])) << 32
            let values = UnsafeBufferPointer(start: logits.floats + row * vocabulary, count: vocabulary)
            tokens.integers[row] = Int32(SeededValues.sample(values, temperature: temperatures.floats[row], key: key))
        }
    }
}
