/// The placement the ranks that survive a failure serve with, without a collective over the
/// broken group: each survivor keeps its slots as they are (renumbered: survivor `i` becomes rank
/// `i`), and every logical expert that only the lost ranks held takes a slot of an expert that
/// still has another copy, to be filled from the checkpoint (or the seed). EPLB rebalances from
/// there while serving.
///
/// Which copy gives way: one of the expert with the most copies left (ties to the lower expert),
/// its last slot; an orphan never displaces another orphan or an expert's last copy, so the
/// result holds every expert once the restores are done.
public struct RecoveryPlacement: Sendable, Equatable {
    /// A slot filled from the checkpoint: `expert`'s weights into `slot` of the new placement.
    public struct Restore: Sendable, Equatable {
        public let layer: Int
        public let slot: PhysicalSlot
        public let expert: LogicalExpert

        public init(layer: Int, slot: PhysicalSlot, expert: LogicalExpert) {
            self.layer = layer
            self.slot = slot
            self.expert = expert
        }
    }

    /// By decoder layer (`nil` for dense layers), on the survivors.
    public let placements: [ExpertPlacement?]
    /// The slots whose expert comes from the checkpoint, layer by layer, in slot order.
    public let restores: [Restore]
    /// The old ranks that survive, in their new order.
    public let survivors: [Int]

    /// - Parameters:
    ///   - current: the placements the group served with, by decoder layer.
    ///   - lost: the old ranks that are gone.
    /// - Throws: ``PlacementError/tooFewSlots(ranks:slotsPerRank:experts:)`` when the survivors'
    ///   slots cannot hold every expert.
    public static func plan(current: [ExpertPlacement?], lost: Set<Int>) throws -> RecoveryPlacement {
        guard let first = current.compactMap({ $0 }).first else {
            return RecoveryPlacement(placements: current, restores: [], survivors: [])
        }
        let survivors = (0..<first.rankCount).filter { !lost.contains($0) }
        let perRank = first.slotsPerRank, experts = first.logicalExpertCount
        guard !survivors.isEmpty, survivors.count * perRank >= experts else {
            throw PlacementError.tooFewSlots(ranks: survivors.count, slotsPerRank: perRank, experts: experts)
        }
        var placements = current
        var restores: [Restore] = []
        for (layer, placement) in current.enumerated() {
            guard let placement else { continue }
            var map = survivors.flatMap { placement.logicalExperts(onRank: $0) }
            var copies = [Int](repeating: 0, count: experts)
            for expert in map { copies[expert.index] += 1 }
            var restored: [Restore] = []
            for orphan in (0..<experts) where copies[orphan] == 0 {
                // The expert with the most copies gives one up (ties: the lower expert).
                let donor = copies.indices.max { copies[$0] < copies[$1] || (copies[$0] == copies[$1] && $0 > $1) }!
                guard copies[donor] >= 2, let slot = map.lastIndex(of: LogicalExpert(donor)) else {
                    throw PlacementError.tooFewSlots(ranks: survivors.count, slotsPerRank: perRank, experts: experts)
                }
                copies[donor] -= 1
                copies[orphan] = 1
                map[slot] = LogicalExpert(orphan)
                restored.append(Restore(layer: layer, slot: PhysicalSlot(slot), expert: LogicalExpert(orphan)))
            }
            placements[layer] = try ExpertPlacement(logicalExpertCount: experts, rankCount: survivors.count, physicalToLogical: map)
            restores += restored.sorted { $0.slot < $1.slot }
        }
        return RecoveryPlacement(placements: placements, restores: restores, survivors: survivors)
    }
}
