import ArgumentParser
import Cluster
import Compute
import ComputeCUDA
import Experts
import Foundation
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

    @Option(help: "Ranks (threads of this process); default: the GPUs visible (cuda), 2 (cpu).")
    var ranks: Int?

    @Option(name: .customLong("all2all-backend"), help: "nccl, host or ipc (auto: nccl on cuda).")
    var all2allBackend: All2AllBackend = .auto

    @Option(name: .customLong("rows"), help: "Comma-separated rows each rank sends per exchange (tokens × top-k).")
    var rowCounts = "8,64,512,2048"

    @Option(help: "Elements per row (the model's hidden size).")
    var hidden = 2048

    @Option(help: "Timed exchanges per row count (after 10 untimed).")
    var iterations = 200

    @Option(name: .customLong("moe-layers"), help: "MoE layers per step, for the per-step column (two exchanges each).")
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

/// The ipc bench: rank processes, each timing the MoE layer through its peer exchange.
extension BenchAllToAllCommand {
    private static let token = "bench"

    /// Starts the rank processes, waits for what each measured, and prints the table.
    private func runPeerRanks(size: Int, rows: [Int]) throws {
        let store = try RendezvousStore(token: Self.token)
        defer { store.close() }
        let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        let children = try (0..<size).map { rank in
            let process = Process()
            process.executableURL = executable
            process.arguments = ["bench", "all-to-all", "--device", "cuda", "--all2all-backend", "ipc", "--ranks", "\(size)",
                                 "--rows", rowCounts, "--hidden", "\(hidden)", "--iterations", "\(iterations)",
                                 "--num-experts", "\(experts)", "--top-k", "\(topK)", "--moe-intermediate-size", "\(intermediate)",
                                 "--child-rank", "\(rank)", "--store-port", "\(store.port)"]
            try process.run()
            return process
        }
        defer {
            for child in children where child.isRunning { child.terminate() }
            for child in children { child.waitUntilExit() }
        }
        let client = try StoreClient(host: "127.0.0.1", port: store.port, token: Self.token)
        defer { client.close() }
        let measured = try (0..<size).map { try Self.result(rank: $0, from: client, children: children) }
        let local = measured[0].local
        print("| rows per rank (tokens × top-k) | MB each rank writes to the others | µs per MoE layer, \(size) ranks over ipc | "
              + "µs per MoE layer, one rank alone for all \(size) ranks' tokens | ms per step (\(moeLayers) layers), ipc / alone |")
        print("|---:|---:|---:|---:|---:|")
        for (index, count) in rows.enumerated() {
            let slowest = measured.map { $0.layer[index] }.max()!
            let megabytes = Double(crossingBytes(rank: 0, size: size, tokens: Self.tokens(count, topK: topK))) / 1e6
            func micro(_ seconds: Double) -> String { String(format: "%.1f", seconds * 1e6) }
            func perStep(_ seconds: Double) -> String { String(format: "%.2f", seconds * Double(moeLayers) * 1000) }
            print("| \(count) | \(String(format: "%.3f", megabytes)) | \(micro(slowest)) | \(micro(local[index])) | "
                  + "\(perStep(slowest)) / \(perStep(local[index])) |")
        }
    }

    /// What rank `rank` reported: its seconds per layer (and, rank 0, the lone rank's), or its error.
    private static func result(rank: Int, from client: StoreClient, children: [Process]) throws -> (layer: [Double], local: [Double]) {
        let deadline = ContinuousClock.now + .seconds(600)
        while true {
            if let text = try? String(decoding: client.get("result/\(rank)", timeout: .seconds(1)), as: UTF8.self) {
                let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
                guard lines.first == "ok", lines.count == 3 else { throw ValidationError("rank \(rank): \(text)") }
                func numbers(_ line: String) -> [Double] { line.split(separator: " ").compactMap { Double($0) } }
                return (numbers(lines[1]), numbers(lines[2]))
            }
            if let exited = children.firstIndex(where: { !$0.isRunning }) {
                throw ValidationError("rank \(exited) exited with status \(children[exited].terminationStatus) before reporting")
            }
            guard ContinuousClock.now < deadline else { throw ValidationError("rank \(rank) reported nothing in 600 s") }
        }
    }

    /// Tokens each rank runs for `rows` rows of `topK` picks.
    private static func tokens(_ rows: Int, topK: Int) -> Int { max(1, (rows + topK - 1) / topK) }

    /// Token `t`'s `k`-th pick: each token's picks spread over the experts, so over every rank alike.
    private func pick(token t: Int, _ k: Int) -> Int32 { Int32((t + k * (experts / topK)) % experts) }

    /// The bytes rank `rank` writes into other ranks' regions: each token's row once to every other
    /// rank that runs one of its picks, and each result of another rank's pick back to its source.
    private func crossingBytes(rank: Int, size: Int, tokens: Int) -> Int {
        let slotsPerRank = experts / size
        var rows = 0
        for t in 0..<tokens {
            let owners = (0..<topK).map { Int(pick(token: rank * tokens + t, $0)) / slotsPerRank }
            rows += Set(owners).subtracting([rank]).count + owners.filter { $0 != rank }.count
        }
        return rows * hidden * 2
    }

    /// One rank process: joins the exchange, times the layer at each row count, and reports; rank 0
    /// then times its own expert operator on every rank's tokens, every expert on its GPU.
    private func runPeerRank(_ rank: Int, size: Int, rows: [Int], storePort: Int) throws {
        let client = try StoreClient(host: "127.0.0.1", port: storePort, token: Self.token)
        defer { client.close() }
        do {
            guard let cuda = try device.makeBackend(rank: rank) as? CUDABackend else { throw ValidationError("ipc needs --device cuda") }
            try cuda.attachCurrentThread()
            let counts = rows.map { Self.tokens($0, topK: topK) }
            let capacity = PeerMemoryExchange.Capacity(
                tokens: counts.max()!, hidden: hidden, topK: topK, logicalExperts: experts, slotsPerRank: experts / size, moeLayers: 1,
                paddingSlot: -1)
            let exchange = try PeerMemoryExchange.join(
                backend: cuda, rank: rank, size: size, capacity: capacity, timeout: .seconds(60),
                set: { try client.set("ipc/\($0)", $1) }, get: { try client.get("ipc/\($0)", timeout: .seconds(120)) })
            try exchange.setPlacement(moeLayer: 0, table: try ExpertPlacement.initial(logicalExperts: experts, ranks: size).replicaTable)
            if rank == 0 { print("\(size) ranks on \(cuda.device), \(experts) experts (\(hidden) × \(intermediate)), top-\(topK), over ipc") }
            let slots = try expertWeights(count: experts / size, seed: UInt64(rank), cuda)
            try cuda.setProfiling(KernelProfile.isRequested && rank == 0)
            var layer: [Double] = []
            for (index, tokens) in counts.enumerated() {
                let (x, routing, batch, out) = try layerInputs(tokens: tokens, firstToken: rank * tokens, cuda)
                layer.append(try timeReplays(cuda, barrier: { try client.barrier("layer-\(index)", size: size, timeout: .seconds(120)) }) {
                    try exchange.runExperts(x, routing: routing, batch: batch, experts: slots, moeLayer: 0, into: out)
                })
            }
            if cuda.profiler != nil {
                KernelProfile.print(cuda, title: "rank 0 GPU time per kernel over every row count (times in the table include the profiling's waits)")
                try cuda.setProfiling(false)
            }
            try client.barrier("layers-timed", size: size, timeout: .seconds(600))
            var alone: [Double] = []
            if rank == 0 {
                let every = try expertWeights(count: experts, seed: 7, cuda)
                for tokens in counts {
                    let (x, routing, _, out) = try layerInputs(tokens: tokens * size, firstToken: 0, cuda)
                    alone.append(try timeReplays(cuda, barrier: {}) { try cuda.expertMLP(x, experts: every, routing: routing, into: out) })
                }
            }
            func line(_ values: [Double]) -> String { values.map { String($0) }.joined(separator: " ") }
            try client.set("result/\(rank)", Array("ok\n\(line(layer))\n\(line(alone))".utf8))
        } catch {
            try? client.set("result/\(rank)", Array("\(error)".utf8))
            throw error
        }
    }

    private func expertWeights(count: Int, seed: UInt64, _ backend: CUDABackend) throws -> ExpertWeights {
        let gateUp = try backend.makeTensor(Shape(count, 2 * intermediate, hidden), .bfloat16, in: .weights)
        let down = try backend.makeTensor(Shape(count, hidden, intermediate), .bfloat16, in: .weights)
        try backend.fillUniform(gateUp, seed: seed, bound: 0.05)
        try backend.fillUniform(down, seed: seed + 1, bound: 0.05)
        return ExpertWeights(gateUp: gateUp, down: down)
    }

    /// A layer's input rows, picks (`pick`, from global token `firstToken`), batch and output for
    /// `tokens` tokens, in a fresh step's scratch.
    private func layerInputs(tokens: Int, firstToken: Int, _ backend: CUDABackend) throws -> (Tensor, Routing, AttentionBatch, Tensor) {
        backend.beginStep()
        let x = try backend.makeTensor(Shape(tokens, hidden), .bfloat16, in: .scratch)
        try backend.fillUniform(x, seed: UInt64(firstToken), bound: 1)
        let picks = (0..<tokens).flatMap { t in (0..<topK).map { pick(token: firstToken + t, $0) } }
        let weights = try backend.makeScratch([Float](repeating: 1 / Float(topK), count: tokens * topK)[...], Shape(tokens, topK), .float32)
        let routing = Routing(experts: try backend.makeScratch(picks[...], Shape(tokens, topK), .int32), weights: weights)
        let positions = try backend.makeScratch((0..<Int32(tokens)).map { $0 }[...], Shape(tokens), .int32)
        let slots = try backend.makeScratch([Int32](repeating: 0, count: tokens)[...], Shape(tokens), .int32)
        let batch = AttentionBatch(tokenCount: tokens, positions: positions, slotMapping: slots, tokenRequests: slots,
                                   blockTables: slots.reshaped(Shape(tokens, 1)))
        return (x, routing, batch, try backend.makeTensor(Shape(tokens, hidden), .bfloat16, in: .scratch))
    }

    /// Mean seconds of one replay of `work` recorded as a graph, over `iterations` after 10 untimed
    /// (`barrier` between them: ranks start the timed replays together).
    private func timeReplays(_ backend: CUDABackend, barrier: () throws -> Void, _ work: () throws -> Void) throws -> Double {
        try backend.beginStepGraph()
        do {
            try work()
        } catch {
            _ = try? backend.endStepGraph()
            throw error
        }
        let graph = try backend.endStepGraph()
        for _ in 0..<10 { try backend.replay(graph) }
        try backend.synchronize()
        try barrier()
        let started = ContinuousClock.now
        for _ in 0..<iterations { try backend.replay(graph) }
        try backend.synchronize()
        return (ContinuousClock.now - started) / .seconds(1) / Double(iterations)
    }
}
