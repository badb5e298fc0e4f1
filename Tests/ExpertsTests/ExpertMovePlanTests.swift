import Experts
import Testing

struct ExpertMovePlanTests {
    /// Applies `transfers` to `old`'s slots, reading every source before writing, as ranks do.
    static func apply(_ transfers: [ExpertTransfer], to old: ExpertPlacement) -> [LogicalExpert] {
        var slots = old.physicalToLogical
        for transfer in transfers {
            #expect(old.physicalToLogical[transfer.source * old.slotsPerRank + transfer.sourceSlot] == transfer.expert)
            slots[transfer.destination * old.slotsPerRank + transfer.destinationSlot] = transfer.expert
        }
        return slots
    }

    @Test func theTransfersTurnTheOldPlacementIntoTheNew() throws {
        let old = try ExpertPlacement.initial(logicalExperts: 8, ranks: 4, redundantExperts: 4)
        // Rank 0 keeps 0 in slot 0, takes 5 (held by rank 2) and a copy of 7 it gets from rank 3.
        let new = try ExpertPlacement(logicalExpertCount: 8, rankCount: 4,
                                      physicalToLogical: [0, 5, 7, 2, 1, 3, 4, 6, 5, 6, 7, 0])
        let transfers = ExpertMovePlan.transfers(from: old, to: new)
        #expect(Self.apply(transfers, to: old) == new.physicalToLogical)
        #expect(transfers.count == new.physicalToLogical.indices.filter { old.physicalToLogical[$0] != new.physicalToLogical[$0] }.count)
        #expect(transfers.first == ExpertTransfer(expert: 5, source: 2, sourceSlot: 1, destination: 0, destinationSlot: 1))
    }

    @Test func anExpertAlreadyOnTheRankIsCopiedLocally() throws {
        let old = try ExpertPlacement(logicalExpertCount: 4, rankCount: 2, physicalToLogical: [0, 1, 2, 3])
        let new = try ExpertPlacement(logicalExpertCount: 4, rankCount: 2, physicalToLogical: [1, 0, 2, 3])
        let transfers = ExpertMovePlan.transfers(from: old, to: new)
        #expect(transfers.allSatisfy { $0.source == $0.destination && $0.source == 0 })
        #expect(Self.apply(transfers, to: old) == new.physicalToLogical)
    }

    @Test func receiversOfAHotExpertReadFromItsReplicasInTurn() throws {
        // Expert 0 has copies on ranks 0 and 1; ranks 2 and 3 each take one more.
        let old = try ExpertPlacement(logicalExpertCount: 5, rankCount: 4, physicalToLogical: [0, 1, 0, 2, 3, 4, 4, 1])
        let new = try ExpertPlacement(logicalExpertCount: 5, rankCount: 4, physicalToLogical: [0, 1, 0, 2, 0, 3, 0, 4])
        let transfers = ExpertMovePlan.transfers(from: old, to: new).filter { $0.expert == 0 }
        #expect(transfers.map(\.source) == [0, 1])
        #expect(Self.apply(ExpertMovePlan.transfers(from: old, to: new), to: old) == new.physicalToLogical)
    }

    @Test func anUnchangedPlacementMovesNothing() throws {
        let placement = try ExpertPlacement.initial(logicalExperts: 12, ranks: 3, redundantExperts: 3)
        #expect(ExpertMovePlan.transfers(from: placement, to: placement).isEmpty)
    }
}
