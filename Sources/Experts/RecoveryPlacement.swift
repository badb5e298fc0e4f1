/// The placement the ranks that survive a failure serve with, from what each of them really holds
/// (no collective over the broken group is needed, and a move that broke off leaves no doubt):
/// each survivor keeps its slots as they are (renumbered: survivor `i` becomes rank `i`), and
/// every logical expert no survivor holds is filled from the checkpoint (or the seed) into a slot
/// that holds nothing usable, else into a slot of an expert that still has another copy. EPLB
/// rebalances from there while serving.
///
/// Which copy gives way: one of the expert with the most copies left (ties to the lower expert),
/// its last slot; an orphan never displaces another orphan or an expert's last copy, so the
/// result holds every expert once the restores are done. A slot that holds nothing usable and is
/// not needed for an orphan gets a copy of the expert with the fewest copies (ties to the lower).
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

    /// - Parameters:
    ///   - held: by decoder layer (`nil` for dense layers), what the survivors' slots hold,
    ///     survivor after survivor in their new order; `nil` for a slot whose weights are no
    ///     expert's (a move into it broke off).
    ///   - ranks: the survivors.
    ///   - experts: logical experts per MoE layer.
    /// - Throws: ``PlacementError/tooFewSlots(ranks:slotsPerRank:experts:)`` when the survivors'
    ///   slots cannot hold every expert.
    public static func plan(held: [[LogicalExpert?]?], ranks: Int, experts: Int) throws -> RecoveryPlacement {
        var placements: [ExpertPlacement?] = []
        var restores: [Restore] = []
        for (layer, slots) in held.enumerated() {
            guard let slots else {
                placements.append(nil)
                continue
            }
            guard ranks >= 1, slots.count % ranks == 0, slots.count >= experts else {
                throw PlacementError.tooFewSlots(ranks: ranks, slotsPerRank: ranks >= 1 ? slots.count / ranks : 0, experts: experts)
            }
            var map = slots
            var copies = [Int](repeating: 0, count: experts)
            for expert in map.compactMap({ $0 }) { copies[expert.index] += 1 }
            var restored: [Restore] = []
            func fill(_ slot: Int, with expert: Int) {
                copies[expert] += 1
                map[slot] = LogicalExpert(expert)
                restored.append(Restore(layer: layer, slot: PhysicalSlot(slot), expert: LogicalExpert(expert)))
            }
            for orphan in (0..<experts) where copies[orphan] == 0 {
                if let empty = map.firstIndex(of: nil) {
                    fill(empty, with: orphan)
                    continue
                }
                // The expert with the most copies gives one up (ties: the lower expert).
                let donor = copies.indices.max { copies[$0] < copies[$1] || (copies[$0] == copies[$1] && $0 > $1) }!
                guard copies[donor] >= 2, let slot = map.lastIndex(of: LogicalExpert(donor)) else {
                    throw PlacementError.tooFewSlots(ranks: ranks, slotsPerRank: slots.count / ranks, experts: experts)
                }
                copies[donor] -= 1
                fill(slot, with: orphan)
            }
            while let empty = map.firstIndex(of: nil) {
                fill(empty, with: copies.indices.min { copies[$0] < copies[$1] }!)
            }
            placements.append(try ExpertPlacement(logicalExpertCount: experts, rankCount: ranks, physicalToLogical: map.map { $0! }))
            restores += restored.sorted { $0.slot < $1.slot }
        }
        return RecoveryPlacement(placements: placements, restores: restores)
    }
}
