/// One expert's weights copied from a slot of one rank into a slot of another (or the same) rank.
/// Ranks are positions in the group; `sourceSlot` and `destinationSlot` are rows of those ranks'
/// expert tensors (a physical slot's index modulo the slots per rank).
public struct ExpertTransfer: Sendable, Equatable {
    public let expert: LogicalExpert
    public let source: Int
    public let sourceSlot: Int
    public let destination: Int
    public let destinationSlot: Int

    public init(expert: LogicalExpert, source: Int, sourceSlot: Int, destination: Int, destinationSlot: Int) {
        self.expert = expert
        self.source = source
        self.sourceSlot = sourceSlot
        self.destination = destination
        self.destinationSlot = destinationSlot
    }
}

/// The copies that turn one placement of a layer into another, computed by every rank from the
/// same two placements, so that senders and receivers agree without a word exchanged.
///
/// A slot whose expert does not change is left alone. A slot that needs expert `e` copies it from
/// its own rank when that rank already holds `e` (a local copy, lowest slot first); otherwise from
/// the old replicas of `e`, taken in turn, so that several receivers of one hot expert do not all
/// read from the same rank. Slots are local indices; transfers come in destination-slot order.
public enum ExpertMovePlan {
    public static func transfers(from old: ExpertPlacement, to new: ExpertPlacement) -> [ExpertTransfer] {
        precondition(old.logicalExpertCount == new.logicalExpertCount && old.rankCount == new.rankCount,
                     "a move keeps the experts, the slots and the ranks")
        return transfers(from: old.physicalToLogical, to: new.physicalToLogical, slotsPerRank: old.slotsPerRank,
                         experts: old.logicalExpertCount)
    }

    /// The same over bare maps; `old` may have empty slots (`nil`: a rank that just joined).
    public static func transfers(from old: [LogicalExpert?], to new: [LogicalExpert], slotsPerRank perRank: Int,
                                 experts: Int) -> [ExpertTransfer] {
        precondition(old.count == new.count, "a move keeps the slots")
        var holdersOf = [[Int]](repeating: [], count: experts)
        for (slot, expert) in old.enumerated() { if let expert { holdersOf[expert.index].append(slot) } }
        var turns = [Int](repeating: 0, count: experts)
        var result: [ExpertTransfer] = []
        for (slot, expert) in new.enumerated() where old[slot] != expert {
            let destination = slot / perRank
            let holders = holdersOf[expert.index]
            precondition(!holders.isEmpty, "expert \(expert) has no copy to move from")
            let source: Int
            if let local = holders.first(where: { $0 / perRank == destination }) {
                source = local
            } else {
                source = holders[turns[expert.index] % holders.count]
                turns[expert.index] += 1
            }
            result.append(ExpertTransfer(expert: expert, source: source / perRank, sourceSlot: source % perRank,
                                         destination: destination, destinationSlot: slot % perRank))
        }
        return result
    }
}
