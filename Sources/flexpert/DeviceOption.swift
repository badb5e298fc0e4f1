import ArgumentParser
import Compute
import ComputeCPU
import ComputeCUDA

/// `--device`: where a rank runs. The only place that names concrete backends.
enum DeviceKind: String, ExpressibleByArgument, CaseIterable {
    case cpu
    case cuda

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

/// `--all2all-backend`: what moves a MoE layer's rows between ranks.
enum All2AllBackend: String, ExpressibleByArgument, CaseIterable {
    /// Peer memory between CUDA ranks (NCCL where a rank cannot reach another's memory: another
    /// host, no peer access), host staging between CPU ranks.
    case auto
    /// The whole MoE layer on the GPUs, rows written into each other's memory through CUDA IPC
    /// (ranks of one host: sharing a GPU, or on GPUs with peer access); steps replay as graphs.
    case ipc
    /// GPU to GPU through NCCL, the host planning each layer's rows (one GPU per rank, any host).
    case nccl
    /// Through host memory and the group's TCP connections (any device; ranks may share a GPU).
    case host

    func resolved(for device: DeviceKind) -> All2AllBackend {
        self != .auto ? self : device == .cuda ? .ipc : .host
    }
}
