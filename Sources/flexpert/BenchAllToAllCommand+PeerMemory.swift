import ArgumentParser
import Compute
import ComputeCUDA
import Experts
import Foundation
import Transport

/// The ipc bench: rank processes, each timing the MoE layer through its peer exchange.
extension BenchAllToAllCommand {
    private static let token = "bench"

    /// A rank process that failed, or reported a failure.
    struct RankFailure: Error, CustomStringConvertible {
        let description: String
    }

    /// Starts the rank processes, waits for what each measured, and prints the table.
    func runPeerRanks(size: Int, rows: [Int]) throws {
        let store = try RendezvousStore(token: Self.token)
        defer { store.close() }
        let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        var children: [Process] = []
        defer {
            for child in children where child.isRunning { child.terminate() }
            for child in children { child.waitUntilExit() }
        }
        for rank in 0..<size {
            let process = Process()
            process.executableURL = executable
            process.arguments = ["bench", "all-to-all", "--device", "cuda", "--all2all-backend", "ipc", "--ranks", "\(size)",
                                 "--rows", rowCounts, "--hidden", "\(hidden)", "--iterations", "\(iterations)",
                                 "--num-experts", "\(experts)", "--top-k", "\(topK)", "--moe-intermediate-size", "\(intermediate)",
                                 "--child-rank", "\(rank)", "--store-port", "\(store.port)"]
            try process.run()
            children.append(process)
        }
        let client = try StoreClient(host: "127.0.0.1", port: store.port, token: Self.token)
        defer { client.close() }
        let measured = try (0..<size).map { try Self.result(rank: $0, from: client, process: children[$0]) }
        for child in children { child.waitUntilExit() }
        let local = measured[0].local
        print("| rows per rank (tokens × top-k) | MB each rank writes to the others | µs per MoE layer, \(size) ranks over ipc | "
              + "µs per MoE layer, one rank alone for all \(size) ranks' tokens | ms per step (\(moeLayers) layers), ipc / alone |")
        print("|---:|---:|---:|---:|---:|")
        for (index, count) in rows.enumerated() {
            let slowest = measured.map { $0.layer[index] }.max()!
            let megabytes = Double(writtenBytes(rank: 0, size: size, tokens: Self.tokens(count, topK: topK))) / 1e6
            func micro(_ seconds: Double) -> String { String(format: "%.1f", seconds * 1e6) }
            func perStep(_ seconds: Double) -> String { String(format: "%.2f", seconds * Double(moeLayers) * 1000) }
            print("| \(count) | \(String(format: "%.3f", megabytes)) | \(micro(slowest)) | \(micro(local[index])) | "
                  + "\(perStep(slowest)) / \(perStep(local[index])) |")
        }
    }

    /// What rank `rank` reported: its seconds per layer (and, rank 0, the lone rank's), or its error.
    private static func result(rank: Int, from client: StoreClient, process: Process) throws -> (layer: [Double], local: [Double]) {
        let deadline = ContinuousClock.now + .seconds(600)
        while true {
            // Read once more after the process has ended: it may have reported just before.
            let ended = !process.isRunning
            do {
                let text = String(decoding: try client.get("result/\(rank)", timeout: .seconds(1)), as: UTF8.self)
                let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
                guard lines.first == "ok", lines.count == 3 else { throw RankFailure(description: "rank \(rank): \(text)") }
                func numbers(_ line: String) -> [Double] { line.split(separator: " ").compactMap { Double($0) } }
                return (numbers(lines[1]), numbers(lines[2]))
            } catch TransportError.timeout {
                if ended { throw RankFailure(description: "rank \(rank) exited with status \(process.terminationStatus) before reporting") }
                guard ContinuousClock.now < deadline else { throw RankFailure(description: "rank \(rank) reported nothing in 600 s") }
            }
        }
    }

    /// Tokens each rank runs for `rows` rows of `topK` picks.
    private static func tokens(_ rows: Int, topK: Int) -> Int { max(1, (rows + topK - 1) / topK) }

    /// Token `t`'s `k`-th pick: each token's picks spread over the experts, so over every rank alike.
    private func pick(token t: Int, _ k: Int) -> Int32 { Int32((t + k * (experts / topK)) % experts) }

    /// The bytes rank `rank` writes into other ranks' regions: its tokens' rows, once to every other
    /// rank that runs one of their picks, and the results of the other ranks' picks it runs (by the
    /// picks' symmetry, as many as it sends out: one per pick of its own tokens that another rank runs).
    private func writtenBytes(rank: Int, size: Int, tokens: Int) -> Int {
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
    func runPeerRank(_ rank: Int, size: Int, rows: [Int], storePort: Int) throws {
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
                layer.append(try timeReplays(cuda, barrier: { try client.barrier("layer-\(index)", size: size, timeout: .seconds(120)) }) {
                    let (x, routing, batch, out) = try layerInputs(tokens: tokens, firstToken: rank * tokens, cuda)
                    return { try exchange.runExperts(x, routing: routing, batch: batch, experts: slots, moeLayer: 0, into: out) }
                })
                // A peer that gave up poisons every rank's later waits, which then return at once.
                try exchange.checkHealth()
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
                    alone.append(try timeReplays(cuda, barrier: {}) {
                        let (x, routing, _, out) = try layerInputs(tokens: tokens * size, firstToken: 0, cuda)
                        return { try cuda.expertMLP(x, experts: every, routing: routing, into: out) }
                    })
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
        let weights = try backend.makeScratch([Float](repeating: 1 / Float(topK), count: tokens * topK), Shape(tokens, topK))
        let routing = Routing(experts: try backend.makeScratch(picks, Shape(tokens, topK)), weights: weights)
        let positions = try backend.makeScratch((0..<Int32(tokens)).map { $0 }, Shape(tokens))
        let slots = try backend.makeScratch([Int32](repeating: 0, count: tokens), Shape(tokens))
        let batch = AttentionBatch(tokenCount: tokens, positions: positions, slotMapping: slots, tokenRequests: slots,
                                   blockTables: slots.reshaped(Shape(tokens, 1)))
        return (x, routing, batch, try backend.makeTensor(Shape(tokens, hidden), .bfloat16, in: .scratch))
    }

    /// Mean seconds of one replay of the work `prepare` sets up, recorded as a graph, over
    /// `iterations` after 10 untimed (`barrier` between them: ranks start the timed replays
    /// together). The work runs once eagerly first, as a served step does before its capture, so
    /// that the step's scratch has grown to what the work needs (no allocation during a capture).
    private func timeReplays(_ backend: CUDABackend, barrier: () throws -> Void, _ prepare: () throws -> () throws -> Void) throws -> Double {
        try prepare()()
        try backend.synchronize()
        let work = try prepare()
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
