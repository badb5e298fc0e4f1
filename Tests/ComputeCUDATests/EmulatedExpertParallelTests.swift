import CUDAKernelEmulator
import Checkpoint
import Compute
@testable import ComputeCUDA
import Engine
import Experts
import Foundation
import Messages
import Models
import Parallelism
import Scheduling
import Synchronization
import Testing
import Transport

/// Expert parallelism on the CUDA backend, through the emulator: the dispatch's device path
/// (rows gathered, exchanged, run through the rank's slots and gathered back by kernels) and
/// NCCLCollectives over the emulator's NCCL, whose ranks are threads of the test process. Real
/// GPUs and NCCL are for `Scripts/check-ep-cuda.sh` on a machine with two.
@Suite struct EmulatedExpertParallelTests {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/qwen3_moe_bf16_sharded").path

    /// The engine every test here runs: 64 tokens a step, 4 sequences, KV blocks of 4 with the
    /// padding block last of 17 (what ``peerExchange`` is sized for).
    static func makeCore(model: CausalLM, backend: CUDABackend, dispatch: ExpertParallelDispatch?) throws -> EngineCore {
        let cache = try KVCache(model: model, blockSize: 4, blockCount: 17, backend: backend)
        return try EngineCore(model: model, backend: backend, cache: cache, configuration: SchedulerConfiguration(
            maxBatchedTokens: 64, maxSequences: 4, maxModelLength: 64), expertDispatch: dispatch)
    }

    /// `prompt`'s greedy outputs; with a group the ranks step together until none has work.
    static func run(_ prompt: [Int], maxTokens: Int, model: CausalLM, backend: CUDABackend, dispatch: ExpertParallelDispatch?)
        throws -> [EngineOutput] {
        let core = try makeCore(model: model, backend: backend, dispatch: dispatch)
        let outputs = Mutex<[EngineOutput]>([])
        core.add(EngineRequest(id: 1, promptTokenIDs: prompt, sampling: .greedy, maxTokens: maxTokens, keepsLogits: true)) {
            output in outputs.withLock { $0.append(output) }
        }
        if let group = dispatch?.group {
            while try group.allReduce([core.hasWork ? 1 : 0], .max, timeout: .seconds(60))[0] == 1 {
                _ = try core.step(padsWhenIdle: true)
            }
        } else {
            while try core.step() {}
        }
        return outputs.withLock { $0 }
    }

    static let prompts = [[5, 17, 300, 2, 44], [9, 9, 1200, 7]]

    /// Rank `rank`'s emulated GPU and its slots of the fixture model by `placement`.
    static func rankModel(_ rank: Int, placement: ExpertPlacement, configuration: ModelConfiguration, weights: WeightFiles)
        throws -> (CUDABackend, CausalLM) {
        let backend = try EmulatedCUDATests.emulatedBackend()
        return (backend, try CausalLM.load(configuration, from: weights, on: backend,
                                           expertSelection: Array(placement.logicalExperts(onRank: rank))))
    }

    /// The peer exchange of `rank` of `size`, sized for `run`'s engine (64 tokens a step, KV
    /// blocks of 4 with the padding block last of 17), joined through `store`.
    static func peerExchange(backend: CUDABackend, model: CausalLM, placement: ExpertPlacement, rank: Int, size: Int,
                             store port: Int, generation: Int = 0) throws -> PeerMemoryExchange {
        let client = try StoreClient(host: "127.0.0.1", port: port, token: "t")
        defer { client.close() }
        let capacity = PeerMemoryExchange.Capacity(
            tokens: 64, hidden: model.configuration.decoder.hiddenSize, topK: model.configuration.moe.topK,
            logicalExperts: model.configuration.moe.expertCount, slotsPerRank: placement.slotsPerRank,
            moeLayers: model.layers.filter { $0.experts != nil }.count, paddingSlot: 16 * 4)
        return try PeerMemoryExchange.join(backend: backend, rank: rank, size: size, capacity: capacity, timeout: .seconds(60),
                                           set: { try client.set("ipc/\(generation)/\($0)", $1) },
                                           get: { try client.get("ipc/\(generation)/\($0)", timeout: .seconds(60)) })
    }

    /// Two ranks, each an emulated GPU with half the experts, rows staged through the host, over
    /// NCCL, or the whole layer through peer memory: each request's tokens and logits are bitwise
    /// those of one GPU holding every expert. Through peer memory these prompts' entries are few
    /// enough for the matrix-vector kernels, as one GPU's assignments are. (Bitwise equality needs
    /// both sides to take the same kind of expert kernel: one GPU chooses by its step's assignments,
    /// a peer-memory rank by the entries it received, so a batch between the two, e.g. 12 tokens
    /// at top-8 over two ranks, agrees only within rounding.)
    @Test(arguments: ["host", "nccl", "ipc"]) func twoRanksGiveWhatOneGPUGives(transport: String) throws {
        try Self.twoRanksMatchOneGPU(transport: transport, prompts: Self.prompts)
    }

    /// Prompts whose prefill sends each rank more entries than the matrix-vector kernels take
    /// (2 ranks × 48 tokens × top-2: about 96 each), so that the grouped GEMMs run through peer
    /// memory, as they do on one GPU (96 assignments), and the decode steps after them the
    /// matrix-vector kernels on both sides.
    @Test func longPromptsThroughPeerMemoryTakeTheGroupedGEMMs() throws {
        try Self.twoRanksMatchOneGPU(transport: "ipc", prompts: [(0..<48).map { 3 + $0 * 7 }, (0..<48).map { 11 + $0 * 5 }])
    }

    static func twoRanksMatchOneGPU(transport: String, prompts: [[Int]]) throws {
        let ncclID = transport == "nccl" ? try NCCLCollectives.makeUniqueID(backend: try EmulatedCUDATests.emulatedBackend()) : nil
        let configuration = try ModelConfiguration(folder: Self.folder)
        let weights = try WeightFiles(folder: Self.folder)
        let placement = try ExpertPlacement.initial(logicalExperts: configuration.moe.expertCount, ranks: 2)
        let store = try RendezvousStore(token: "t")
        defer { store.close() }
        let results = try onThreadRanks(2) { rank -> (outputs: [EngineOutput], bytes: Int) in
            let (backend, model) = try Self.rankModel(rank, placement: placement, configuration: configuration, weights: weights)
            let client = try StoreClient(host: "127.0.0.1", port: store.port, token: "t")
            let group = try StatelessGroup(store: client, name: "ep", generation: 0, rank: rank, size: 2)
            defer { group.close() }
            let nccl = try ncclID.map {
                try NCCLCollectives(backend: backend, uniqueID: $0, rank: rank, size: 2, timeout: .seconds(60))
            }
            let exchange = transport == "ipc"
                ? try Self.peerExchange(backend: backend, model: model, placement: placement, rank: rank, size: 2, store: store.port)
                : nil
            let dispatch = try ExpertParallelDispatch(group: group, placements: model.layers.map { $0.experts == nil ? nil : placement },
                                                      timeout: .seconds(60),
                                                      transport: ExpertTransport(collectives: nccl, exchange: exchange))
            let outputs = try Self.run(prompts[rank], maxTokens: 3 + rank, model: model, backend: backend, dispatch: dispatch)
            #expect(ExpertTransport(collectives: dispatch.collectives, exchange: dispatch.exchange).name.hasPrefix(transport))
            // The peer exchange moves rows with no host in the way: it counts none (its picks it does count).
            let routed = try dispatch.takeStepCounts().reduce(0, +)
            return (outputs: outputs, bytes: transport == "ipc" ? Int(routed) : dispatch.exchangedBytes)
        }

        let backend = try EmulatedCUDATests.emulatedBackend()
        let whole = try CausalLM.load(configuration, from: weights, on: backend)
        for rank in 0..<2 {
            let (together, bytes) = results[rank]
            #expect(bytes > 0, "rank \(rank) sent no rows (ipc: counted no pick)")
            let alone = try Self.run(prompts[rank], maxTokens: 3 + rank, model: whole, backend: backend, dispatch: nil)
            #expect(together.flatMap(\.tokenIDs) == alone.flatMap(\.tokenIDs), "rank \(rank)")
            #expect(together.flatMap(\.tokenIDs).count == 3 + rank)
            let sameLogits = together.map(\.logits) == alone.map(\.logits)
            #expect(sameLogits, "rank \(rank): logits must be bitwise equal")
        }
    }

    /// NCCLCollectives' own calls (group of sends and receives, the polled completion) on one
    /// rank and on three (threads): rows arrive unchanged where the counts send them, bad counts
    /// and a peer that never joins are errors.
    @Test func ncclMovesRowsAndNamesItsFailures() throws {
        let backend = try EmulatedCUDATests.emulatedBackend()
        let id = try NCCLCollectives.makeUniqueID(backend: backend)
        #expect(id.count == 128)
        let nccl = try NCCLCollectives(backend: backend, uniqueID: id, rank: 0, size: 1, timeout: .seconds(5))
        #expect(nccl.transport.hasPrefix("nccl 2."))
        let rows = try backend.makeTensor(Shape(6, 32), .bfloat16, in: .weights)
        try backend.fillUniform(rows, seed: 7, bound: 1)
        let received = try backend.makeTensor(Shape(6, 32), .bfloat16, in: .weights)
        try nccl.exchangeRows(rows, sendCounts: [5], into: received, receiveCounts: [5])
        var sent = [Float](repeating: 0, count: 6 * 32), arrived = sent
        try sent.withUnsafeMutableBufferPointer { try backend.download(rows, into: $0) }
        try arrived.withUnsafeMutableBufferPointer { try backend.download(received, into: $0) }
        #expect(Array(arrived[0..<(5 * 32)]) == Array(sent[0..<(5 * 32)]))
        #expect(arrived[(5 * 32)...].allSatisfy { $0 == 0 }, "the sixth row was not sent")

        #expect(throws: ComputeError.self) {
            try nccl.exchangeRows(rows, sendCounts: [7], into: received, receiveCounts: [7])
        }
        // Rank 1 never calls in: rank 0 gives up at the deadline instead of waiting with NCCL.
        let started = ContinuousClock.now
        let lonely = try NCCLCollectives.makeUniqueID(backend: backend)
        let abandoned = #expect(throws: CUDAError.self) {
            _ = try NCCLCollectives(backend: backend, uniqueID: lonely, rank: 0, size: 2, timeout: .milliseconds(300))
        }
        #expect(abandoned.map { "\($0)".contains("ncclCommInitRank(rank 0 of 2) did not finish within") } == true, "\(String(describing: abandoned))")
        #expect(ContinuousClock.now - started < .seconds(30))
    }

    /// Three ranks over NCCL (threads, each with its own emulated GPU), uneven counts, empty ones
    /// and rows to itself: every rank receives from each peer, in rank order, exactly the rows
    /// that peer's counts sent it.
    @Test func threeNCCLRanksExchangeRowsByTheirCounts() throws {
        let counts = [[2, 0, 3], [1, 1, 0], [0, 4, 2]]   // counts[source][destination]
        let width = 16
        let id = try NCCLCollectives.makeUniqueID(backend: try EmulatedCUDATests.emulatedBackend())
        let results = try onThreadRanks(3) { rank -> (sent: [Float], received: [Float]) in
            let backend = try EmulatedCUDATests.emulatedBackend()
            let nccl = try NCCLCollectives(backend: backend, uniqueID: id, rank: rank, size: 3, timeout: .seconds(30))
            let sending = counts[rank].reduce(0, +), receiving = counts.map { $0[rank] }.reduce(0, +)
            let rows = try backend.makeTensor(Shape(sending, width), .bfloat16, in: .weights)
            try backend.fillUniform(rows, seed: UInt64(rank + 1), bound: 1)
            let received = try backend.makeTensor(Shape(receiving, width), .bfloat16, in: .weights)
            try nccl.exchangeRows(rows, sendCounts: counts[rank], into: received, receiveCounts: counts.map { $0[rank] })
            var sent = [Float](repeating: 0, count: sending * width), arrived = [Float](repeating: 0, count: receiving * width)
            try sent.withUnsafeMutableBufferPointer { try backend.download(rows, into: $0) }
            try arrived.withUnsafeMutableBufferPointer { try backend.download(received, into: $0) }
            return (sent: sent, received: arrived)
        }
        let outcomes = results
        for destination in 0..<3 {
            var expected: [Float] = []
            for source in 0..<3 {
                let offset = counts[source][0..<destination].reduce(0, +)
                expected += outcomes[source].sent[(offset * width)..<((offset + counts[source][destination]) * width)]
            }
            #expect(outcomes[destination].received == expected, "rank \(destination)")
        }
    }

    /// A growing cluster's standby group joins a communicator of its own through the store while
    /// the current one stays usable: two ranks of generation 0, then the same two and a newcomer
    /// in generation 1; rows go over both.
    @Test func aStandbyGroupJoinsItsOwnCommunicatorBesideTheCurrentOne() throws {
        let store = try RendezvousStore(token: "t")
        defer { store.close() }
        let port = store.port
        @Sendable func join(_ backend: CUDABackend, generation: Int, rank: Int, size: Int) throws -> NCCLCollectives {
            let client = try StoreClient(host: "127.0.0.1", port: port, token: "t")
            defer { client.close() }
            let key = "nccl/world/\(generation)/unique-id"
            let nccl = try NCCLCollectives.reserve(backend: backend, rank: rank, size: size, timeout: .seconds(30))
            try nccl.join(publish: { try client.set(key, $0) }, fetch: { try client.get(key, timeout: .seconds(30)) },
                          barrier: { try client.barrier("nccl/world/\(generation)/joining", size: size, timeout: .seconds(30)) })
            return nccl
        }
        /// Each rank sends one row of its rank number to every rank; returns what arrived.
        @Sendable func exchange(_ nccl: NCCLCollectives, _ backend: CUDABackend) throws -> [Float] {
            let width = 8
            let rows = try backend.makeTensor(Shape(nccl.size, width), .bfloat16, in: .weights)
            try backend.fill(rows, value: Float(nccl.rank + 1))
            let received = try backend.makeTensor(Shape(nccl.size, width), .bfloat16, in: .weights)
            let ones = [Int](repeating: 1, count: nccl.size)
            try nccl.exchangeRows(rows, sendCounts: ones, into: received, receiveCounts: ones)
            var values = [Float](repeating: 0, count: nccl.size * width)
            try values.withUnsafeMutableBufferPointer { try backend.download(received, into: $0) }
            return stride(from: 0, to: values.count, by: width).map { values[$0] }
        }
        let results = try onThreadRanks(3) { rank -> [[Float]] in
            let backend = try EmulatedCUDATests.emulatedBackend()
            var arrived: [[Float]] = []
            let current = rank < 2 ? try join(backend, generation: 0, rank: rank, size: 2) : nil
            if let current { arrived.append(try exchange(current, backend)) }
            let standby = try join(backend, generation: 1, rank: rank, size: 3)
            if let current { arrived.append(try exchange(current, backend)) }
            arrived.append(try exchange(standby, backend))
            return arrived
        }
        for rank in 0..<3 {
            let arrived = results[rank]
            #expect(arrived == (rank < 2 ? [[1, 2], [1, 2], [1, 2, 3]] : [[1, 2, 3]]), "rank \(rank)")
        }
    }

    /// Two ranks through peer memory with graphs: decode steps are recorded once per batch size
    /// and replayed, and the replays go on across a move of experts between the ranks (the routing
    /// tables change on the device, the weights move into the same slots: nothing is recorded
    /// anew); every token is what one GPU gives, and the device counted every real token's picks
    /// (padding left out) on the slots they went to.
    @Test func thePeerExchangeReplaysGraphsAcrossAMoveAndCountsOnTheDevice() throws {
        let configuration = try ModelConfiguration(folder: Self.folder)
        let weights = try WeightFiles(folder: Self.folder)
        let experts = configuration.moe.expertCount
        let placement = try ExpertPlacement.initial(logicalExperts: experts, ranks: 2)
        // The first and last experts change ranks.
        var swapped = placement.physicalToLogical
        swapped.swapAt(0, swapped.count - 1)
        let moved = try ExpertPlacement(logicalExpertCount: experts, rankCount: 2, physicalToLogical: swapped)
        let prompts = [[5, 17, 300, 2, 44], [9, 9, 1200]]
        let maxTokens = [12, 8]
        let store = try RendezvousStore(token: "t")
        defer { store.close() }
        struct Outcome: Sendable {
            let tokens: [Int]
            let replayedBeforeMove: Int
            let replayed: Int
            let recorded: Int
            let recordedBeforeMove: Int
            let counted: Int64
        }
        let results = try onThreadRanks(2) { rank -> Outcome in
            let (backend, model) = try Self.rankModel(rank, placement: placement, configuration: configuration, weights: weights)
            let client = try StoreClient(host: "127.0.0.1", port: store.port, token: "t")
            let group = try StatelessGroup(store: client, name: "ep", generation: 0, rank: rank, size: 2)
            defer { group.close() }
            let exchange = try Self.peerExchange(backend: backend, model: model, placement: placement, rank: rank, size: 2,
                                                 store: store.port)
            let dispatch = try ExpertParallelDispatch(group: group, placements: model.layers.map { $0.experts == nil ? nil : placement },
                                                      timeout: .seconds(60), transport: ExpertTransport(exchange: exchange))
            #expect(dispatch.allowsStepGraphs && dispatch.countsOnDevice)
            let rebalancer = ExpertRebalancer(dispatch: dispatch, experts: model.layers.map(\.experts), backend: backend,
                                              layersPerStep: 8)
            let core = try Self.makeCore(model: model, backend: backend, dispatch: dispatch)
            let tokens = Mutex<[Int]>([])
            core.add(EngineRequest(id: 1, promptTokenIDs: prompts[rank], sampling: .greedy, maxTokens: maxTokens[rank])) {
                output in tokens.withLock { $0 += output.tokenIDs }
            }
            var steps = 0, replayedBeforeMove = 0, recordedBeforeMove = 0
            while try group.allReduce([core.hasWork ? 1 : 0], .max, timeout: .seconds(60))[0] == 1 {
                _ = try core.step(padsWhenIdle: true)
                steps += 1
                if steps == 5 {
                    (replayedBeforeMove, recordedBeforeMove) = core.stepGraphCounts
                    rebalancer.start(targets: dispatch.placements.map { $0 == nil ? nil : moved })
                    while rebalancer.isMoving { _ = try rebalancer.moveNextLayers(timeout: .seconds(60)) }
                }
            }
            try dispatch.checkHealth()
            let (replayed, recorded) = core.stepGraphCounts
            return Outcome(tokens: tokens.withLock { $0 }, replayedBeforeMove: replayedBeforeMove, replayed: replayed,
                           recorded: recorded, recordedBeforeMove: recordedBeforeMove,
                           counted: try dispatch.takeStepCounts().reduce(0, +))
        }

        let backend = try EmulatedCUDATests.emulatedBackend()
        let whole = try CausalLM.load(configuration, from: weights, on: backend)
        let moeLayers = whole.layers.filter { $0.experts != nil }.count
        for rank in 0..<2 {
            let outcome = results[rank]
            let alone = try Self.run(prompts[rank], maxTokens: maxTokens[rank], model: whole, backend: backend, dispatch: nil)
            #expect(outcome.tokens == alone.flatMap(\.tokenIDs), "rank \(rank)")
            #expect(outcome.tokens.count == maxTokens[rank])
            #expect(outcome.recordedBeforeMove >= 1 && outcome.replayedBeforeMove >= 1, "rank \(rank): \(outcome)")
            #expect(outcome.recorded == outcome.recordedBeforeMove, "nothing recorded anew after the move: \(outcome)")
            #expect(outcome.replayed > outcome.replayedBeforeMove + 2, "replays went on after the move: \(outcome)")
            // Counted since the last read, which the move did not take (the test moved by hand):
            // every real token (the prompt, then one per decode step but the last) in every MoE layer.
            let picks = Int64((prompts[rank].count + maxTokens[rank] - 1) * configuration.moe.topK * moeLayers)
            #expect(outcome.counted == picks, "rank \(rank)")
        }
    }

    /// A reconfiguration's commit with the peer exchange: between two steps, both ranks switch to a
    /// standby group and its own freshly joined exchange (new regions, so the recorded graphs are
    /// dropped); the next steps record against the new buffers and replay again, and every token is
    /// what one GPU gives.
    @Test func afterACommitGraphsRecordAgainstTheNewExchange() throws {
        let configuration = try ModelConfiguration(folder: Self.folder)
        let weights = try WeightFiles(folder: Self.folder)
        let placement = try ExpertPlacement.initial(logicalExperts: configuration.moe.expertCount, ranks: 2)
        let prompts = [[5, 17, 300, 2, 44], [9, 9, 1200]]
        let maxTokens = [12, 10]
        let store = try RendezvousStore(token: "t")
        defer { store.close() }
        struct Outcome: Sendable {
            let tokens: [Int]
            let recordedBefore: Int
            let replayedBefore: Int
            let recorded: Int
            let replayed: Int
        }
        let results = try onThreadRanks(2) { rank -> Outcome in
            let (backend, model) = try Self.rankModel(rank, placement: placement, configuration: configuration, weights: weights)
            let client = try StoreClient(host: "127.0.0.1", port: store.port, token: "t")
            var group = try StatelessGroup(store: client, name: "ep", generation: 0, rank: rank, size: 2)
            let placements = model.layers.map { $0.experts == nil ? nil : placement }
            let dispatch = try ExpertParallelDispatch(
                group: group, placements: placements, timeout: .seconds(60),
                transport: ExpertTransport(exchange: try Self.peerExchange(backend: backend, model: model, placement: placement,
                                                                           rank: rank, size: 2, store: store.port)))
            let core = try Self.makeCore(model: model, backend: backend, dispatch: dispatch)
            let tokens = Mutex<[Int]>([])
            core.add(EngineRequest(id: 1, promptTokenIDs: prompts[rank], sampling: .greedy, maxTokens: maxTokens[rank])) {
                output in tokens.withLock { $0 += output.tokenIDs }
            }
            var steps = 0, before = (recorded: 0, replayed: 0)
            while try group.allReduce([core.hasWork ? 1 : 0], .max, timeout: .seconds(60))[0] == 1 {
                _ = try core.step(padsWhenIdle: true)
                steps += 1
                if steps == 5 {
                    (before.replayed, before.recorded) = core.stepGraphCounts
                    let standby = try StatelessGroup(store: client, name: "ep", generation: 1, rank: rank, size: 2)
                    let exchange = try Self.peerExchange(backend: backend, model: model, placement: placement, rank: rank,
                                                         size: 2, store: store.port, generation: 1)
                    try dispatch.reconfigure(group: standby, placements: placements, transport: ExpertTransport(exchange: exchange))
                    core.discardStepGraphs()
                    group.close()
                    group = standby
                }
            }
            group.close()
            try dispatch.checkHealth()
            let (replayed, recorded) = core.stepGraphCounts
            return Outcome(tokens: tokens.withLock { $0 }, recordedBefore: before.recorded, replayedBefore: before.replayed,
                           recorded: recorded, replayed: replayed)
        }

        let backend = try EmulatedCUDATests.emulatedBackend()
        let whole = try CausalLM.load(configuration, from: weights, on: backend)
        for rank in 0..<2 {
            let outcome = results[rank]
            let alone = try Self.run(prompts[rank], maxTokens: maxTokens[rank], model: whole, backend: backend, dispatch: nil)
            #expect(outcome.tokens == alone.flatMap(\.tokenIDs), "rank \(rank)")
            #expect(outcome.recordedBefore >= 1 && outcome.replayedBefore >= 1, "\(outcome)")
            #expect(outcome.recorded > outcome.recordedBefore, "recorded again after the commit: \(outcome)")
            #expect(outcome.replayed > outcome.replayedBefore + 2, "and replayed: \(outcome)")
        }
    }

    static let peerCapacity = PeerMemoryExchange.Capacity(tokens: 4, hidden: 16, topK: 2, logicalExperts: 4, slotsPerRank: 2,
                                                          moeLayers: 1, paddingSlot: 1000)

    /// Rank `rank` of a peer exchange of two through `store`, on an emulated backend of its own.
    static func joinPeer(_ store: RendezvousStore, rank: Int, host: String, prefix: String,
                         timeout: Duration) throws -> (PeerMemoryExchange, CUDABackend) {
        let backend = try EmulatedCUDATests.emulatedBackend()
        let client = try StoreClient(host: "127.0.0.1", port: store.port, token: "t")
        defer { client.close() }
        let exchange = try PeerMemoryExchange.join(backend: backend, rank: rank, size: 2, capacity: peerCapacity, timeout: timeout,
                                                   host: host, set: { try client.set("\(prefix)/\($0)", $1) },
                                                   get: { try client.get("\(prefix)/\($0)", timeout: .seconds(30)) })
        return (exchange, backend)
    }

    /// The rank 1 of a pair, joined on a thread of its own; the test drops it to play its death.
    final class KeptPeer: @unchecked Sendable { var peer: (PeerMemoryExchange, CUDABackend)? }

    /// Rank 0 of a peer exchange of two (waiting `timeout` for rank 1's rows), once rank 1, which never steps, has joined too.
    static func peerPair(_ store: RendezvousStore, timeout: Duration) throws -> (PeerMemoryExchange, CUDABackend, KeptPeer) {
        let kept = KeptPeer(), peerJoined = DispatchSemaphore(value: 0)
        Thread {
            kept.peer = try? joinPeer(store, rank: 1, host: "h", prefix: "pair", timeout: .seconds(30))
            peerJoined.signal()
        }.start()
        let (exchange, backend) = try joinPeer(store, rank: 0, host: "h", prefix: "pair", timeout: timeout)
        peerJoined.wait()
        return (exchange, backend, kept)
    }

    /// One MoE layer of two tokens through `exchange`.
    static func runPeerLayer(_ exchange: PeerMemoryExchange, on backend: CUDABackend) throws {
        func tensor(_ shape: Shape, _ dtype: DType) throws -> Tensor { try backend.makeTensor(shape, dtype, in: .weights) }
        func integers(_ values: [Int32]) throws -> Tensor {
            let made = try tensor(Shape(values.count), .int32)
            try values.withUnsafeBytes {
                try backend.upload(HostTensor(bytes: $0, shape: made.shape, dtype: .int32, owner: nil), into: made)
            }
            return made
        }
        let x = try tensor(Shape(2, 16), .bfloat16)
        try backend.fillUniform(x, seed: 1, bound: 1)
        let experts = ExpertWeights(gateUp: try tensor(Shape(2, 32, 16), .bfloat16), down: try tensor(Shape(2, 16, 16), .bfloat16))
        let routing = Routing(experts: try integers([0, 3, 1, 2]).reshaped(Shape(2, 2)), weights: try tensor(Shape(2, 2), .float32))
        let batch = AttentionBatch(tokenCount: 2, positions: try integers([0, 1]), slotMapping: try integers([0, 1]),
                                   tokenRequests: try integers([0, 0]), blockTables: try integers([0]))
        try exchange.runExperts(x, routing: routing, batch: batch, experts: experts, moeLayer: 0,
                                into: try tensor(Shape(2, 16), .bfloat16))
    }

    /// A peer that stops stepping costs a layer its results, not the GPU: rank 0's wait gives up
    /// after the exchange's timeout, later waits give up at once, ``PeerMemoryExchange/checkHealth()``
    /// names the rank, and the peer, when it comes, finds itself poisoned and fails too. Ranks that
    /// cannot reach each other's memory (here: two hosts) are all refused at the join, alike.
    @Test func thePeerExchangeNamesAPeerThatNeverCameAndRefusesAnotherHost() throws {
        let store = try RendezvousStore(token: "t")
        defer { store.close() }
        @Sendable func join(rank: Int, host: String, prefix: String, timeout: Duration) throws -> (PeerMemoryExchange, CUDABackend) {
            try Self.joinPeer(store, rank: rank, host: host, prefix: prefix, timeout: timeout)
        }
        // Rank 1 joins and then never steps; its region stays alive to the end of the test.
        final class Kept: @unchecked Sendable { var peer: (PeerMemoryExchange, CUDABackend)? }
        let kept = Kept(), peerJoined = DispatchSemaphore(value: 0)
        let peer = Thread {
            kept.peer = try? join(rank: 1, host: "h", prefix: "a", timeout: .seconds(30))
            peerJoined.signal()
        }
        peer.start()
        let (exchange, backend) = try join(rank: 0, host: "h", prefix: "a", timeout: .milliseconds(300))
        let placement = try ExpertPlacement.initial(logicalExperts: 4, ranks: 2)
        try exchange.setPlacement(moeLayer: 0, table: placement.replicaTable)
        #expect(throws: ComputeError.self) { try exchange.setPlacement(moeLayer: 1, table: placement.replicaTable) }
        func runLayer(_ exchange: PeerMemoryExchange, on backend: CUDABackend) throws { try Self.runPeerLayer(exchange, on: backend) }
        // Two layers: the first gives up on rank 1 after 300 ms, the second waits no more.
        let started = ContinuousClock.now
        try runLayer(exchange, on: backend)
        try runLayer(exchange, on: backend)
        let failure = #expect(throws: CUDAError.self) { try exchange.checkHealth() }
        #expect(failure.map { "\($0)".contains("for rank 1's rows") } == true, "\(String(describing: failure))")
        #expect(ContinuousClock.now - started < .seconds(30))
        #expect(try exchange.takeCounts().reduce(0, +) == 8, "both layers counted both tokens' picks")
        // Rank 1 comes late: rank 0's flags for that layer are all in, but rank 0 poisoned it, so
        // it fails the step too (at once: its own timeout is 30 s).
        peerJoined.wait()
        let (late, lateBackend) = try #require(kept.peer)
        #expect(throws: ComputeError.self, "a layer without its table is refused") { try runLayer(late, on: lateBackend) }
        try late.setPlacement(moeLayer: 0, table: placement.replicaTable)
        let lateStarted = ContinuousClock.now
        try runLayer(late, on: lateBackend)
        let poisoned = #expect(throws: CUDAError.self) { try late.checkHealth() }
        #expect(poisoned.map { "\($0)".contains("another rank of the group gave up") } == true, "\(String(describing: poisoned))")
        #expect(ContinuousClock.now - lateStarted < .seconds(10))

        let refusals = Mutex([String]())
        let finished = DispatchGroup()
        for (rank, host) in ["h1", "h2"].enumerated() {
            finished.enter()
            Thread {
                do {
                    _ = try join(rank: rank, host: host, prefix: "b", timeout: .seconds(30))
                } catch {
                    refusals.withLock { $0.append("\(error)") }
                }
                finished.leave()
            }.start()
        }
        finished.wait()
        let seen = refusals.withLock { $0 }
        #expect(seen.count == 2 && seen.allSatisfy { $0.contains("not available") && $0.contains("runs on h") }, "\(seen)")
    }

    /// A recovery ends a layer's wait for a peer that is gone at once, not at the exchange's
    /// timeout: another thread sets the rank's poison word through a stream of its own.
    @Test func anInterruptionEndsAWaitForALostPeer() throws {
        let store = try RendezvousStore(token: "t")
        defer { store.close() }
        let (exchange, backend, kept) = try Self.peerPair(store, timeout: .seconds(60))
        try exchange.setPlacement(moeLayer: 0, table: try ExpertPlacement.initial(logicalExperts: 4, ranks: 2).replicaTable)
        let interruption = ExchangeInterruption(stream: try backend.makeTransferStream(), poison: exchange.poison)
        Thread {
            Thread.sleep(forTimeInterval: 0.3)
            interruption.interrupt()
        }.start()
        let started = ContinuousClock.now
        try Self.runPeerLayer(exchange, on: backend)
        let failure = #expect(throws: CUDAError.self) { try exchange.checkHealth() }
        #expect(failure.map { "\($0)".contains("another rank of the group gave up") } == true, "\(String(describing: failure))")
        #expect(ContinuousClock.now - started < .seconds(20), "the wait ended at its timeout, not at the interruption")
        _ = kept.peer
    }

    /// A peer's region is a shareable allocation that each rank maps for itself: when the peer's
    /// exchange is gone (its process died), the survivor's layer still writes into the peer's
    /// pages without fault, gives up waiting for it and names it.
    @Test func aLostPeersRegionStaysMappedInTheSurvivor() throws {
        let store = try RendezvousStore(token: "t")
        defer { store.close() }
        let (exchange, backend, kept) = try Self.peerPair(store, timeout: .milliseconds(200))
        #expect(exchange.regionOutlivesRank && kept.peer?.0.regionOutlivesRank == true)
        kept.peer = nil
        try exchange.setPlacement(moeLayer: 0, table: try ExpertPlacement.initial(logicalExperts: 4, ranks: 2).replicaTable)
        try Self.runPeerLayer(exchange, on: backend)
        let failure = #expect(throws: CUDAError.self) { try exchange.checkHealth() }
        #expect(failure.map { "\($0)".contains("for rank 1's rows") } == true, "\(String(describing: failure))")
    }

    @Test func peerCardsSurviveTheStore() throws {
        let shared = PeerMemoryExchange.Card(access: .shared(socket: "flexpert-region-1-2", secret: Array(0..<32), mappedBytes: 4 << 20),
                                             deviceOrdinal: 3, host: "node-a", bytes: 12_345)
        #expect(try PeerMemoryExchange.Card(decoding: shared.encoded) == shared)
        let legacy = PeerMemoryExchange.Card(access: .ipc(handle: Array(repeating: 7, count: 64)), deviceOrdinal: 0, host: "b", bytes: 9)
        #expect(try PeerMemoryExchange.Card(decoding: legacy.encoded) == legacy)
        #expect(throws: PeerMemoryError.self) { try PeerMemoryExchange.Card(decoding: Array(shared.encoded.prefix(20))) }
        #expect(throws: PeerMemoryError.self) { try PeerMemoryExchange.Card(decoding: legacy.encoded + [0]) }
    }

    /// The dispatch over one NCCL rank (every row sent to itself through NCCL) changes no token
    /// and no logit. Its slots hold the experts in reverse order, so that layers go through the
    /// dispatch: in logical order, one rank runs them locally (``ExpertDispatch/isLocal``).
    @Test func dispatchOverNCCLChangesNothing() throws {
        let backend = try EmulatedCUDATests.emulatedBackend()
        let model = try CausalLM.load(folder: Self.folder, format: .auto, on: backend)
        let experts = model.configuration.moe.expertCount
        let reversed = (0..<experts).reversed().map { LogicalExpert($0) }
        let placement = try ExpertPlacement(logicalExpertCount: experts, rankCount: 1, physicalToLogical: reversed)
        let slotted = try CausalLM.load(try ModelConfiguration(folder: Self.folder), from: try WeightFiles(folder: Self.folder),
                                        on: backend, expertSelection: reversed)
        let store = try RendezvousStore(token: "t")
        defer { store.close() }
        let group = try StatelessGroup(store: try StoreClient(host: "127.0.0.1", port: store.port, token: "t"), name: "ep",
                                       generation: 0, rank: 0, size: 1)
        defer { group.close() }
        let nccl = try NCCLCollectives(backend: backend, uniqueID: try NCCLCollectives.makeUniqueID(backend: backend), rank: 0,
                                       size: 1, timeout: .seconds(5))
        let dispatch = try ExpertParallelDispatch(group: group, placements: model.layers.map { $0.experts == nil ? nil : placement },
                                              transport: ExpertTransport(collectives: nccl))
        #expect(!dispatch.isLocal)
        let dispatched = try Self.run(Self.prompts[0], maxTokens: 3, model: slotted, backend: backend, dispatch: dispatch)
        let plain = try Self.run(Self.prompts[0], maxTokens: 3, model: model, backend: backend, dispatch: nil)
        #expect(dispatch.exchangeSeconds > 0)
        #expect(dispatched.flatMap(\.tokenIDs) == plain.flatMap(\.tokenIDs))
        let sameLogits = dispatched.map(\.logits) == plain.map(\.logits)
        #expect(sameLogits)
    }
}
