import ArgumentParser
import Compute
import ComputeCPU
import ComputeCUDA

/// `--device`: where a rank runs. The only place that names concrete backends.
enum DeviceKind: String, ExpressibleByArgument, CaseIterable {
    case cpu
    case cuda

    func makeBackend() throws -> any Backend {
        switch self {
        case .cpu: CPUBackend()
        case .cuda: try CUDABackend.load(deviceIndex: 0)
        }
    }
}
