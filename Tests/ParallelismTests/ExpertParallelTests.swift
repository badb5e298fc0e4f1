import Checkpoint
import Compute
import ComputeCPU
import Engine
import Experts
import Foundation
import Messages
import Models
import Parallelism
import Scheduling
import Synchronization
import TestSupport
import Testing
import Transport

/// Expert parallelism with threads as ranks (each with its own backend, model slice, KV cache,
/// engine and group over loopback TCP): every rank serves its own request (data-parallel
/// attention) while its MoE layers exchange tokens, ranks that finish early keep stepping with
/// padding tokens, and each request's tokens and logits are bitwise those of one rank holding
/// every expert.
struct ExpertParallelTests {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/qwen3_moe").path

    static func prompts(_ count: Int) -> [[Int]] {
        (0..<count).map { rank in (0..<8).map { (rank * 131 + $0 * 37 + 5) % 1990 } }
    }

    /// Runs `prompt` for `maxTokens` tokens on one engine; returns its outputs. With a group, the
    /// ranks step together until none has work, those without work running padding steps.
    static func run(_ prompt: [Int], maxTokens: Int, on core: EngineCore, lockstep group: StatelessGroup?,
                    afterStep: (_ padding: Bool) throws -> Void = { _ in }) throws -> [EngineOutput] {
        let outputs = Mutex<[EngineOutput]>([])
        core.add(EngineRequest(id: 1, promptTokenIDs: prompt, sampling: .greedy, maxTokens: maxTokens, keepsLogits: true)) {
            output in outputs.withLock { $0.append(output) }
        }
        if let group {
            while try group.allReduce([core.hasWork ? 1 : 0], .max, timeout: .seconds(30))[0] == 1 {
                let padding = !core.hasWork
                _ = try core.step(padsWhenIdle: true)
                try afterStep(padding)
            }
        } else {
            while try core.step() {}
        }
        return outputs.withLock { $0 }
    }

    /// Rank r's request is longer than rank r−1's, so lower ranks finish first and pad.
    static func maxTokens(_ rank: Int) -> Int { 3 + 2 * rank }

    static func engine(_ model: CausalLM, _ backend: CPUBackend, dispatch: (any ExpertDispatch)?) throws -> EngineCore {
        let cache = try KVCache(model: model, blockSize: 4, blockCount: 17, backend: backend)
        return try EngineCore(model: model, backend: backend, cache: cache, configuration: SchedulerConfiguration(
            maxBatchedTokens: 64, maxSequences: 4, maxModelLength: 64), expertDispatch: dispatch)
    }

    @Test(arguments: [1, 2, 4])
    func ranksTogetherGiveWhatOneRankGives(ranks: Int) throws {
        let configuration = try ModelConfiguration(folder: Self.folder)
        let weights = try WeightFiles(folder: Self.folder)
        let expertCount = configuration.moe.expertCount
        // One rank in logical order would run its layers locally, not through the dispatch: reversed, it goes through.
        let placement = ranks == 1
            ? try ExpertPlacement(logicalExpertCount: expertCount, rankCount: 1, physicalToLogical: (0..<expertCount).reversed().map { LogicalExpert($0) })
            : try ExpertPlacement.initial(logicalExperts: expertCount, ranks: ranks)
        let store = try RendezvousStore(token: "t")
        defer { store.close() }
        let prompts = Self.prompts(ranks)

        let results = onRanks(ranks) { rank -> (outputs: [EngineOutput], bytesSent: Int, isLocal: Bool) in
            let backend = CPUBackend()
            let model = try CausalLM.load(configuration, from: weights, on: backend,
                                          expertSelection: Array(placement.logicalExperts(onRank: rank)))
            let client = try StoreClient(host: "127.0.0.1", port: store.port, token: "t")
            let group = try StatelessGroup(store: client, name: "ep", generation: 0, rank: rank, size: ranks)
            defer { group.close() }
            let placements = model.layers.map { layer -> ExpertPlacement? in
                if case .sparse = layer.feedForward { return placement }
                return nil
            }
            let dispatch = try ExpertParallelDispatch(group: group, placements: placements, timeout: .seconds(30))
            let outputs = try Self.run(prompts[rank], maxTokens: Self.maxTokens(rank),
                                       on: try Self.engine(model, backend, dispatch: dispatch), lockstep: group)
            return (outputs, dispatch.exchangedBytes, dispatch.isLocal)
        }

        let backend = CPUBackend()
        let whole = try CausalLM.load(configuration, from: weights, on: backend)
        for rank in 0..<ranks {
            let (together, bytesSent, isLocal) = try results[rank].get()
            #expect((bytesSent > 0) == (ranks > 1), "rank \(rank) sent \(bytesSent) bytes")
            #expect(!isLocal)
            let alone = try Self.run(prompts[rank], maxTokens: Self.maxTokens(rank),
                                     on: try Self.engine(whole, backend, dispatch: nil), lockstep: nil)
            #expect(together.flatMap { $0.tokenIDs } == alone.flatMap { $0.tokenIDs }, "rank \(rank)")
            let sameLogits = together.map { $0.logits } == alone.map { $0.logits }
            #expect(sameLogits, "rank \(rank): logits must be bitwise equal")
            #expect(together.flatMap { $0.tokenIDs }.count == Self.maxTokens(rank))
        }
    }

    /// One rank holding every expert in logical order runs its layers as a plain rank (no exchange,
    /// graphs allowed); a placement out of order sends it back through the dispatch.
    @Test func oneRankInOrderRunsLocally() throws {
        let configuration = try ModelConfiguration(folder: Self.folder)
        let experts = configuration.moe.expertCount
        let backend = CPUBackend()
        let model = try CausalLM.load(configuration, from: try WeightFiles(folder: Self.folder), on: backend)
        let store = try RendezvousStore(token: "t")
        defer { store.close() }
        let group = try StatelessGroup(store: try StoreClient(host: "127.0.0.1", port: store.port, token: "t"), name: "one",
                                       generation: 0, rank: 0, size: 1)
        defer { group.close() }
        let inOrder = try ExpertPlacement.initial(logicalExperts: experts, ranks: 1)
        let dispatch = try ExpertParallelDispatch(group: group, placements: model.layers.map { $0.experts == nil ? nil : inOrder })
        #expect(dispatch.isLocal)
        let local = try Self.run(Self.prompts(1)[0], maxTokens: 4, on: try Self.engine(model, backend, dispatch: dispatch), lockstep: nil)
        let alone = try Self.run(Self.prompts(1)[0], maxTokens: 4, on: try Self.engine(model, backend, dispatch: nil), lockstep: nil)
        #expect(local.flatMap(\.tokenIDs) == alone.flatMap(\.tokenIDs) && dispatch.exchangeSeconds == 0)

        let swapped = try ExpertPlacement(logicalExpertCount: experts, rankCount: 1,
                                          physicalToLogical: [1, 0] + (2..<experts).map { LogicalExpert($0) })
        let layer = try #require(model.layers.firstIndex { $0.experts != nil })
        try dispatch.switchPlacement(swapped, layer: layer)
        #expect(!dispatch.isLocal, "slots out of order need the dispatch's map")
        try dispatch.switchPlacement(inOrder, layer: layer)
        #expect(dispatch.isLocal)
    }

    /// EPLB rebalancing every other step, one layer moved per step, with redundant slots: expert
    /// weights move between ranks many times while requests run, and no logit changes by a bit.
    @Test(arguments: [2, 4])
    func movingExpertsWhileServingChangesNoLogit(ranks: Int) throws {
        let configuration = try ModelConfiguration(folder: Self.folder)
        let weights = try WeightFiles(folder: Self.folder)
        let placement = try ExpertPlacement.initial(logicalExperts: configuration.moe.expertCount, ranks: ranks,
                                                    redundantExperts: ranks)
        let store = try RendezvousStore(token: "t")
        defer { store.close() }
        let prompts = Self.prompts(ranks)
        let longest = 24

        let results = onRanks(ranks) { rank -> (outputs: [EngineOutput], rearrangements: Int, received: Int, final: [ExpertPlacement?]) in
            let backend = CPUBackend()
            let model = try CausalLM.load(configuration, from: weights, on: backend,
                                          expertSelection: Array(placement.logicalExperts(onRank: rank)))
            let client = try StoreClient(host: "127.0.0.1", port: store.port, token: "t")
            let group = try StatelessGroup(store: client, name: "ep", generation: 0, rank: rank, size: ranks)
            defer { group.close() }
            let dispatch = try ExpertParallelDispatch(group: group, placements: model.layers.map { $0.experts == nil ? nil : placement },
                                                  timeout: .seconds(30))
            let rebalancer = ExpertRebalancer(dispatch: dispatch, experts: model.layers.map(\.experts), backend: backend,
                                              layersPerStep: 1)
            let eplb = EPLB(dispatch: dispatch, rebalancer: rebalancer, windowSize: 3, logInterval: 1000, stepInterval: 2)
            let outputs = try Self.run(prompts[rank], maxTokens: longest - rank, on: try Self.engine(model, backend, dispatch: dispatch),
                                       lockstep: group) { padding in
                try eplb.afterStep(padding: padding, group: group, timeout: .seconds(30))
            }
            return (outputs, rebalancer.rearrangementCount, rebalancer.receivedExpertCount, dispatch.placements)
        }

        let backend = CPUBackend()
        let whole = try CausalLM.load(configuration, from: weights, on: backend)
        let finals = try results.map { try $0.get().final }
        #expect(Set(finals.map { "\($0)" }).count == 1, "every rank ends with the same placements")
        #expect(finals[0] != whole.layers.map { $0.experts == nil ? nil : placement }, "the placement changed")
        let received = try results.reduce(0) { $0 + (try $1.get().received) }
        #expect(received >= 4, "expert copies received: \(received)")
        for rank in 0..<ranks {
            let result = try results[rank].get()
            #expect(result.rearrangements >= 4, "rank \(rank) rearranged \(result.rearrangements) times")
            let alone = try Self.run(prompts[rank], maxTokens: longest - rank, on: try Self.engine(whole, backend, dispatch: nil),
                                     lockstep: nil)
            #expect(result.outputs.flatMap { $0.tokenIDs } == alone.flatMap { $0.tokenIDs }, "rank \(rank)")
            let sameLogits = result.outputs.map { $0.logits } == alone.map { $0.logits }
            #expect(sameLogits, "rank \(rank): logits must be bitwise equal")
        }
    }
}
