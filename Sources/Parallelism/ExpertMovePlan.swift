/// One expert's weights copied from a slot of one rank into a slot of another (or the same) rank.
public struct ExpertTransfer: Sendable, Equatable {
    public let expert: Int
    public let source: Int
    public let sourceSlot: Int
    public let destination: Int
    public let destinationSlot: Int

    public init(expert: Int, source: Int, sourceSlot: Int, destination: Int, destinationSlot: Int) {
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
        precondition(old.logicalExpertCount == new.logicalExpertCount
                     && old.physicalToLogical.count == new.physicalToLogical.count
                     && old.rankCount == new.rankCount, "a move keeps the experts, the slots and the ranks")
        let perRank = old.slotsPerRank
        var turns = [Int](repeating: 0, count: old.logicalExpertCount)
        var result: [ExpertTransfer] = []
        for (slot, expert) in new.physicalToLogical.enumerated() where old.physicalToLogical[slot] != expert {
            let destination = slot / perRank
            let holders = old.logicalToPhysical[expert]
            let source: Int
            if let local = holders.first(where: { $0 / perRank == destination }) {
                source = local
            } else {
                source = holders[turns[expert] % holders.count]
                turns[expert] += 1
            }
            result.append(ExpertTransfer(expert: expert, source: source / perRank, sourceSlot: source % perRank,
                                         destination: destination, destinationSlot: slot % perRank))
        }
        return result
    }
}
