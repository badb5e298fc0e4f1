import ArgumentParser
import Compute
import ComputeCPU
import ComputeCUDA

/// `--device`: where a rank runs. The only place that names concrete backends.
enum DeviceKind: String, ExpressibleByArgument, CaseIterable {
    case cpu
    case cuda

    /// - Parameter cpuThreads: the CPU backend's threads (default: every core).
    func makeBackend(cpuThreads: Int? = nil) throws -> any Backend {
        switch self {
        case .cpu: CPUBackend(threads: cpuThreads)
        case .cuda: try CUDABackend.load(deviceIndex: 0)
        }
    }
}
