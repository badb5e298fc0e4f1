public import Compute
public import Models

/// How much memory the paged KV cache gets: a byte count (`--kv-cache-memory-bytes`), or what is
/// left of the device once everything else of the rank is in place (`--gpu-memory-utilization`).
public enum KVCacheMemory: Sendable, Equatable {
    case bytes(Int)
    /// vLLM's `--gpu-memory-utilization`: the rank may fill this share of the GPU's memory, so the
    /// cache takes what is free when it is sized, less the share `1 − utilization` left to others.
    /// A rank holding all its experts sizes it after its largest steps' scratch
    /// (``EngineCore/reserveStepMemory(model:backend:configuration:blockSize:)``); an expert-parallel
    /// rank, whose steps need its group, before: its scratch comes out of the share left free. On
    /// the CPU, whose memory is every process's, the cache takes half of the memory available then.
    case utilization(Double)

    /// What is allocated after the cache and never given to it: the decode graphs' input buffers
    /// and instantiations, the driver's module loads, cuBLAS's and NCCL's lazy allocations.
    static let driverReserveBytes = 512 << 20

    /// The cache's budget in bytes on `backend` as it is now.
    public func budgetBytes(on backend: any Backend) throws -> Int {
        switch self {
        case .bytes(let bytes):
            return bytes
        case .utilization(let utilization):
            return Self.budgetBytes(utilization: utilization, free: try backend.availableMemoryBytes(),
                                    total: try backend.totalMemoryBytes())
        }
    }

    /// The cache's share of a device with `free` of `total` bytes left (`total` nil: host memory).
    public static func budgetBytes(utilization: Double, free: Int, total: Int?) -> Int {
        guard let total else { return free / 2 }
        let others = total - Int((Double(total) * utilization).rounded())
        return max(0, min(free - others, free - driverReserveBytes))
    }

    /// Blocks of `blockSize` tokens that fit, capped at what `maxSequences` sequences of
    /// `maxModelLength` tokens could ever use (more would never be touched), plus the engine's
    /// padding block.
    public func blockCount(model: CausalLM, backend: any Backend, blockSize: Int, maxSequences: Int,
                           maxModelLength: Int) throws -> Int {
        let blockBytes = KVCache.blockBytes(model: model, blockSize: blockSize, dtype: backend.activationDType)
        let budget = try budgetBytes(on: backend)
        let blocksPerSequence = (maxModelLength + blockSize - 1) / blockSize
        let useful = maxSequences.multipliedReportingOverflow(by: blocksPerSequence)
        let count = min(budget / blockBytes, useful.overflow ? Int.max : useful.partialValue + 1)
        guard count - 1 >= blocksPerSequence else {
            throw EngineError.cacheTooSmall(tokens: max(0, count - 1) * blockSize, maxModelLength: maxModelLength)
        }
        return count
    }
}
