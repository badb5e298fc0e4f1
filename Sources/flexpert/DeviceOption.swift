public import ArgumentParser
import Compute
import ComputeCPU
import ComputeCUDA
import Messages

/// `--device`: where a rank runs. The only place that names concrete backends.
extension DeviceKind: ExpressibleByArgument {
    /// - Parameters:
    ///   - cpuThreads: the CPU backend's threads (default: every core).
    ///   - rank: the rank of an expert-parallel group this backend serves; CUDA ranks take the
    ///     machine's GPUs in turn (rank r on GPU r mod the GPUs visible).
    func makeBackend(cpuThreads: Int? = nil, rank: Int = 0) throws -> any Backend {
        switch self {
        case .cpu: CPUBackend(threads: cpuThreads)
        case .cuda: try CUDABackend.load(deviceIndex: rank % max(1, try CUDABackend.deviceCount()))
        }
    }
}

extension All2AllBackend: ExpressibleByArgument {}
