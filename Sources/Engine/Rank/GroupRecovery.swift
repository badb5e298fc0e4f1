import Compute
import Experts
import Foundation
import Models
import Parallelism
import Transport

/// A survivor's part in healing its group after a member was lost, on the step loop's thread
/// (which owns the backend): forms the group of the survivors through the cluster's store,
/// learns what every survivor's slots hold, plans the placement from that
/// (``RecoveryPlacement``: the same on every survivor), restores into its own slots the experts
/// no survivor holds, and joins the new group's transport. The requests and KV cache stay as they
/// were; the step that broke runs again in the new group.
enum GroupRecovery {
    struct Outcome {
        let group: StatelessGroup
        let placements: [ExpertPlacement?]
        let transport: ExpertTransport
        /// The slots (decoder layer, row) this rank read from the checkpoint.
        let restored: [(layer: Int, slot: Int)]
    }

    /// Restoring experts from the checkpoint failed part way: `slots` (decoder layer, row) may
    /// hold anything now, and a later recovery must count them as holding no expert.
    struct RestoreFailed: Error, CustomStringConvertible {
        let slots: [(layer: Int, slot: Int)]
        let reason: any Error
        var description: String { "restoring \(slots.count) experts from the checkpoint failed: \(reason)" }
    }

    /// - Parameters:
    ///   - held: what this rank's slots hold, by decoder layer (`nil` for dense layers; a `nil`
    ///     slot holds no expert's weights).
    ///   - checkpoint: where lost experts are read from (the model's files, or its seed).
    ///   - waitsOn: told the store connection the recovery waits on, and `nil` when it is done (a
    ///     newer recovery closes it, ending the waits of the formation and the transport's join).
    ///   - formed: told the group once it stands (so that a newer recovery can interrupt its collectives).
    ///   - isCancelled: polled while waiting for the other survivors (a newer recovery came).
    static func run(generation: Int, rank: Int, size: Int, held: [[LogicalExpert?]?], experts: Int, access: ClusterAccess,
                    model: CausalLM, backend: any Backend, checkpoint: () throws -> any WeightSource,
                    transports: StandbyTransports?, waitsOn: (StoreClient?) -> Void, formed: (StatelessGroup) -> Void,
                    isCancelled: @escaping @Sendable () -> Bool) throws -> Outcome {
        let store = try access.connect()
        waitsOn(store)
        defer {
            waitsOn(nil)
            store.close()
        }
        // A newer recovery posted before `waitsOn` closed nothing: it is seen here.
        if isCancelled() { throw TransportError.refused("recovery into generation \(generation) superseded") }
        let group = try StatelessGroup(store: store, name: "world", generation: generation, rank: rank, size: size,
                                       host: access.host, timeout: access.prepareTimeout, isCancelled: isCancelled)
        formed(group)
        // A newer recovery that came before `formed` interrupted nothing: it is seen here.
        if isCancelled() {
            group.close()
            throw TransportError.refused("recovery into generation \(generation) superseded")
        }
        do {
            let everyone = try group.allGather(encode(held), timeout: access.prepareTimeout)
            let all = try everyone.map { try decode($0, like: held) }
            let combined = held.indices.map { layer in held[layer].map { _ in all.flatMap { $0[layer]! } } }
            if let bad = combined.compactMap({ $0 }).joined().compactMap({ $0 }).first(where: { $0.index >= experts }) {
                throw TransportError.protocolViolation("a survivor holds expert \(bad) of \(experts)")
            }
            let plan = try RecoveryPlacement.plan(held: combined, ranks: size, experts: experts)
            let perRank = held.compactMap { $0 }.first?.count ?? 0
            let mine = plan.restores.filter { $0.slot.index / perRank == rank }
                .map { (layer: $0.layer, slot: $0.slot.index % perRank, expert: $0.expert) }
            // The transport first: a recovery that fails there has written nothing into the weights.
            let standby = try transports?(generation, rank, size, perRank) ?? HostStagedStandbyTransport()
            _ = try standby.join(store: store, copies: backend)
            if !mine.isEmpty {
                do {
                    try model.restoreExperts(mine, from: try checkpoint(), on: backend)
                } catch {
                    throw RestoreFailed(slots: mine.map { ($0.layer, $0.slot) }, reason: error)
                }
            }
            return Outcome(group: group, placements: plan.placements, transport: standby.transport(),
                           restored: mine.map { ($0.layer, $0.slot) })
        } catch {
            group.close()
            throw error
        }
    }

    /// The MoE layers' slots in order, an expert per slot (−1: none).
    private static func encode(_ held: [[LogicalExpert?]?]) -> [UInt8] {
        var bytes: [UInt8] = []
        for slots in held.compactMap({ $0 }) {
            for slot in slots { withUnsafeBytes(of: Int64(slot?.index ?? -1).littleEndian) { bytes += $0 } }
        }
        return bytes
    }

    /// A survivor's slots, shaped as this rank's (every survivor has the same layers and slots).
    private static func decode(_ bytes: [UInt8], like held: [[LogicalExpert?]?]) throws -> [[LogicalExpert?]?] {
        let count = held.compactMap { $0?.count }.reduce(0, +)
        guard bytes.count == 8 * count else {
            throw TransportError.protocolViolation("a survivor sent \(bytes.count) bytes of slots where \(8 * count) were due")
        }
        var offset = 0
        return held.map { slots in
            slots.map { slots in
                slots.map { _ in
                    let value = bytes[offset..<(offset + 8)].withUnsafeBytes { Int64(littleEndian: $0.loadUnaligned(as: Int64.self)) }
                    offset += 8
                    return value < 0 ? nil : LogicalExpert(Int(value))
                }
            }
        }
    }
}
