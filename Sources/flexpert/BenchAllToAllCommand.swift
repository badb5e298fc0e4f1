import ArgumentParser
import Compute
import ComputeCUDA
import Foundation
import Messages
import Parallelism
import Synchronization
import Transport

/// What expert parallelism's exchange costs. With nccl or host: one MoE layer's dispatch (or
/// combine) in transport alone, every rank sending its rows spread evenly over the ranks and
/// receiving as many; ranks are threads of this process, each with its own backend (CUDA: GPU r
/// mod the GPUs). With ipc the transport is the whole MoE layer (dispatch, the local experts and
/// combine are one device exchange), so the bench times that layer, replayed as a graph as a
/// served step runs it, next to one rank's own expert operator running every rank's tokens with
/// every expert; ranks are processes of their own (a process cannot open its own IPC handles).
struct BenchAllToAllCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "all-to-all", abstract: "Time the exchange of MoE rows between ranks (NCCL, host staging or peer memory).")

    @Option(help: "cpu or cuda.")
    var device: DeviceKind = .cuda

    @Option(help: "Ranks (threads of this process; ipc: processes); default: the GPUs visible (cuda), 2 (cpu).")
    var ranks: Int?

    @Option(name: .customLong("all2all-backend"), help: "nccl, host or ipc (auto: nccl on cuda).")
    var all2allBackend: All2AllBackend = .auto

    @Option(name: .customLong("rows"), help: "Comma-separated rows each rank sends per exchange (tokens × top-k).")
    var rowCounts = "8,64,512,2048"

    @Option(help: "Elements per row (the model's hidden size).")
    var hidden = 2048

    @Option(help: "Timed exchanges per row count (after 10 untimed).")
    var iterations = 200

    @Option(name: .customLong("moe-layers"), help: "MoE layers per step, for the per-step column (nccl, host: two exchanges each; ipc: one layer each).")
    var moeLayers = 48

    @Option(name: .customLong("num-experts"), help: "ipc: logical experts of the layer (Qwen3-30B-A3B's by default).")
    var experts = 128

    @Option(name: .customLong("top-k"), help: "ipc: experts each token picks.")
    var topK = 8

    @Option(name: .customLong("moe-intermediate-size"), help: "ipc: each expert's intermediate size.")
    var intermediate = 768

    @Option(name: .customLong("child-rank"), help: .hidden)
    var childRank: Int?

    @Option(name: .customLong("store-port"), help: .hidden)
    var storePort: Int?

    func run() throws {
        let transport = all2allBackend == .auto ? (device == .cuda ? .nccl : .host) : all2allBackend
        if transport != .host && device != .cuda { throw ValidationError("--all2all-backend \(transport.rawValue) needs --device cuda") }
        let size = try ranks ?? (device == .cuda ? CUDABackend.deviceCount() : 2)
        let rows = try parseIDList(rowCounts, option: "--rows")
        guard size >= 1, hidden >= 1, iterations >= 1, rows.allSatisfy({ $0 >= 1 }) else {
            throw ValidationError("--ranks, --hidden, --iterations and --rows must be positive")
        }
        if transport == .ipc {
            guard topK >= 1, topK <= experts, experts % size == 0, intermediate >= 1, hidden % 8 == 0 else {
                throw ValidationError("ipc needs 1 ≤ --top-k ≤ --num-experts, --num-experts divisible by --ranks, --hidden divisible by 8")
            }
            if let childRank, let storePort {
                try runPeerRank(childRank, size: size, rows: rows, storePort: storePort)
            } else {
                try runPeerRanks(size: size, rows: rows)
            }
            return
        }
        let store = try RendezvousStore(token: "bench")
        defer { store.close() }
        let results = Mutex([Result<(seconds: [Double], elementBytes: Int), any Error>?](repeating: nil, count: size))
        let done = DispatchGroup()
        for rank in 0..<size {
            done.enter()
            let thread = Thread {
                let result = Result { try self.runRank(rank, size: size, rows: rows, transport: transport, storePort: store.port) }
                results.withLock { $0[rank] = result }
                done.leave()
            }
            thread.stackSize = 8 << 20
            thread.start()
        }
        done.wait()
        let measured = try results.withLock { $0 }.map { try $0!.get() }
        let seconds = measured.map(\.seconds), elementBytes = measured[0].elementBytes
        print("| rows per rank | MB out of each rank | µs per exchange | GB/s per rank | ms per step (\(moeLayers) layers × 2) |")
        print("|---:|---:|---:|---:|---:|")
        for (index, count) in rows.enumerated() {
            let slowest = seconds.map { $0[index] }.max()!
            let crossing = size == 1 ? count : count - (count + size - 1) / size  // rank 0's rows to the others
            let bytes = Double(crossing * hidden * elementBytes)
            print("| \(count) | \(String(format: "%.3f", bytes / 1e6)) | \(String(format: "%.1f", slowest * 1e6)) | "
                  + "\(String(format: "%.1f", bytes / slowest / 1e9)) | \(String(format: "%.2f", slowest * Double(2 * moeLayers) * 1000)) |")
        }
    }

    /// One rank's mean seconds per exchange, for each row count, and the bytes of an element.
    private func runRank(_ rank: Int, size: Int, rows: [Int], transport: All2AllBackend, storePort: Int)
        throws -> (seconds: [Double], elementBytes: Int) {
        let backend = try device.makeBackend(cpuThreads: 1, rank: rank)
        try backend.attachCurrentThread()
        let client = try StoreClient(host: "127.0.0.1", port: storePort, token: "bench")
        let group = try StatelessGroup(store: client, name: "bench", generation: 0, rank: rank, size: size)
        defer { group.close() }
        let collectives: any DeviceCollectives
        if transport == .nccl {
            guard let cuda = backend as? CUDABackend else { throw ValidationError("--all2all-backend nccl needs --device cuda") }
            let id = rank == 0 ? try NCCLCollectives.makeUniqueID(backend: cuda) : []
            let shared = try group.broadcast(id, root: 0, timeout: .seconds(60))
            collectives = try NCCLCollectives(backend: cuda, uniqueID: shared, rank: rank, size: size, timeout: .seconds(60))
        } else {
            collectives = HostStagedCollectives(group: group, backend: backend, timeout: .seconds(60))
        }
        if rank == 0 { print("\(size) ranks on \(backend.device), rows of \(hidden) \(backend.activationDType) over \(collectives.transport)") }
        var seconds: [Double] = []
        for count in rows {
            let counts = (0..<size).map { peer in count / size + (peer < count % size ? 1 : 0) }
            let incoming = [Int](repeating: counts[rank], count: size)
            let outbound = try backend.makeTensor(Shape(count, hidden), backend.activationDType, in: .weights)
            let inbound = try backend.makeTensor(Shape(counts[rank] * size, hidden), backend.activationDType, in: .weights)
            try backend.fillUniform(outbound, seed: UInt64(rank), bound: 1)
            for _ in 0..<10 { try collectives.exchangeRows(outbound, sendCounts: counts, into: inbound, receiveCounts: incoming) }
            try group.barrier(timeout: .seconds(60))
            let started = ContinuousClock.now
            for _ in 0..<iterations { try collectives.exchangeRows(outbound, sendCounts: counts, into: inbound, receiveCounts: incoming) }
            try backend.synchronize()
            let elapsed = ContinuousClock.now - started
            seconds.append(elapsed / .seconds(1) / Double(iterations))
        }
        return (seconds, backend.activationDType.byteCount)
    }
}
