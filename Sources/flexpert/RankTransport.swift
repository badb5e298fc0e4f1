import Checkpoint
import Compute
import ComputeCUDA
import Engine
import Foundation
import Messages
import Models
import Transport

/// The rows' transport of an expert-parallel rank of `generation`, joined with its peers through
/// the store: peer memory or NCCL for CUDA ranks (`auto`: peer memory where every rank can reach
/// every other's, NCCL otherwise, which the ranks find out together), host staging over the group
/// otherwise. Its memory is reserved on the backend's thread when it is made; ``join(store:copies:)``
/// touches only the driver, NCCL and `copies`, so a standby group's runs on the preparation's thread.
/// Unchecked Sendable: made and taken on the step loop's thread, joined on the preparation's in between (``StandbyTransport``).
final class RankTransport: StandbyTransport, @unchecked Sendable {
    private var peerExchange: PeerMemoryExchange?
    /// Reserved when NCCL is chosen, or with `auto` beside peer memory in case a rank cannot reach another's.
    private var nccl: NCCLCollectives?
    private let generation: Int
    private let rank: Int
    private let size: Int
    private let joinTimeout: Duration
    private var joined: ExpertTransport?

    /// - Parameters:
    ///   - timeout: how long an exchange waits for a peer's rows (`--collective-timeout`).
    ///   - joinTimeout: how long joining waits for every rank to arrive.
    init(_ settings: RankBuilder.Settings, model: CausalLM, paddingSlot: Int, backend: any Backend, generation: Int, rank: Int,
         size: Int, slotsPerRank: Int, timeout: Duration, joinTimeout: Duration) throws {
        self.generation = generation
        self.rank = rank
        self.size = size
        self.joinTimeout = joinTimeout
        let chosen = settings.all2allBackend.resolved(for: settings.device)
        guard size > 1, chosen != .host else {
            (peerExchange, nccl) = (nil, nil)
            return
        }
        guard let cuda = backend as? CUDABackend else { throw RankError("--all2all-backend \(chosen.rawValue) needs --device cuda") }
        if chosen == .ipc {
            guard let experts = model.layers.lazy.compactMap(\.experts).first else {
                (peerExchange, nccl) = (nil, nil)
                return
            }
            let tokens = EngineCore.maxStepTokens(settings.schedulerConfiguration(for: model.configuration))
            let capacity = PeerMemoryExchange.Capacity(
                tokens: tokens, hidden: experts.hiddenSize, topK: model.configuration.moe.topK, logicalExperts: model.configuration.moe.expertCount,
                slotsPerRank: slotsPerRank, moeLayers: model.layers.filter { $0.experts != nil }.count,
                paddingSlot: paddingSlot)
            do {
                peerExchange = try PeerMemoryExchange.reserve(backend: cuda, rank: rank, size: size, capacity: capacity, timeout: timeout)
            } catch PeerMemoryError.unavailable(let reason) where settings.all2allBackend == .auto {
                if rank == 0 { Self.log("expert rows go over NCCL: \(reason)") }
            }
        }
        if peerExchange == nil {
            nccl = try NCCLCollectives.reserve(backend: cuda, rank: rank, size: size, timeout: timeout)
        } else {
            nccl = settings.all2allBackend == .auto ? try? NCCLCollectives.reserve(backend: cuda, rank: rank, size: size, timeout: timeout) : nil
        }
    }

    func join(store: StoreClient, copies: any TensorTransfers) throws -> Bool {
        let (generation, joinTimeout) = (generation, joinTimeout)
        if let peerExchange {
            do {
                try peerExchange.join(through: copies, set: { try store.set("ipc/world/\(generation)/\($0)", $1) },
                                      get: { try store.get("ipc/world/\(generation)/\($0)", timeout: joinTimeout) })
                joined = ExpertTransport(exchange: peerExchange)
                return true
            } catch PeerMemoryError.unavailable(let reason) where nccl != nil {
                if rank == 0 { Self.log("expert rows go over NCCL: \(reason)") }
            }
        }
        guard let nccl else {
            joined = .hostStaged
            return false
        }
        let key = "nccl/world/\(generation)/unique-id"
        try nccl.join(publish: { try store.set(key, $0) }, fetch: { try store.get(key, timeout: joinTimeout) },
                      barrier: { try store.barrier("nccl/world/\(generation)/joining", size: size, timeout: joinTimeout) })
        joined = ExpertTransport(collectives: nccl)
        return false
    }

    /// What the join did not use is released here, on the step loop's thread (a peer exchange
    /// waits for the backend's stream when it goes).
    func transport() -> ExpertTransport {
        guard let joined else { preconditionFailure("rank \(rank)'s transport of generation \(generation) taken before it was joined") }
        if joined.exchange == nil { peerExchange = nil }
        if joined.collectives == nil { nccl = nil }
        return joined
    }

    private static func log(_ line: String) {
        FileHandle.standardError.write(Data("flexpert engine: \(line)\n".utf8))
    }
}
