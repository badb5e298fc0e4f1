public import Compute
public import Models

/// How much memory the paged KV cache gets: a byte count, or a fraction of the memory the
/// device has free once the weights are loaded.
public enum KVCacheMemory: Sendable, Equatable {
    case bytes(Int)
    case fractionOfFree(Double)

    /// Blocks of `blockSize` tokens that fit, capped at what `maxSequences` sequences of
    /// `maxModelLength` tokens could ever use (more would never be touched), plus the engine's
    /// padding block.
    public func blockCount(model: CausalLM, backend: any Backend, blockSize: Int, maxSequences: Int,
                           maxModelLength: Int) throws -> Int {
        let blockBytes = KVCache.blockBytes(model: model, blockSize: blockSize, dtype: backend.activationDType)
        let budget: Int = switch self {
        case .bytes(let bytes): bytes
        case .fractionOfFree(let fraction): Int(Double(try backend.availableMemoryBytes()) * fraction)
        }
        let blocksPerSequence = (maxModelLength + blockSize - 1) / blockSize
        let useful = maxSequences.multipliedReportingOverflow(by: blocksPerSequence)
        let count = min(budget / blockBytes, useful.overflow ? Int.max : useful.partialValue + 1)
        guard count - 1 >= blocksPerSequence else {
            throw EngineError.cacheTooSmall(tokens: max(0, count - 1) * blockSize, maxModelLength: maxModelLength)
        }
        return count
    }
}
