import Experts
import Testing

struct RecoveryPlacementTests {
    /// The same placement in every layer but the dense first one.
    static func current(_ placement: ExpertPlacement, layers: Int) -> [ExpertPlacement?] {
        [nil] + (0..<layers).map { _ in placement }
    }

    @Test func survivorsKeepTheirSlotsWhenEveryExpertHasACopyLeft() throws {
        // 6 experts + 6 copies over 3 ranks: ranks 0 and 2 together still hold every expert.
        let old = try ExpertPlacement(logicalExpertCount: 6, rankCount: 3, physicalToLogical: [0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5])
        let plan = try RecoveryPlacement.plan(current: Self.current(old, layers: 2), lost: [1])
        #expect(plan.survivors == [0, 2])
        #expect(plan.restores.isEmpty)
        let placement = try #require(plan.placements[1])
        #expect(placement.rankCount == 2)
        #expect(Array(placement.logicalExperts(onRank: 0)) == Array(old.logicalExperts(onRank: 0)))
        #expect(Array(placement.logicalExperts(onRank: 1)) == Array(old.logicalExperts(onRank: 2)))
        #expect(plan.placements[0] == nil)
    }

    @Test func anExpertOnlyTheLostRankHeldTakesASpareCopysSlotAndComesFromTheCheckpoint() throws {
        // Rank 1 alone holds experts 2 and 3; the survivors hold [0, 1] and [0, 0].
        let old = try ExpertPlacement(logicalExpertCount: 4, rankCount: 3, physicalToLogical: [0, 1, 2, 3, 0, 0])
        let plan = try RecoveryPlacement.plan(current: [old], lost: [1])
        let placement = try #require(plan.placements[0])
        // Expert 0 (three copies) gives its last slot to 2, then (two left, the most) its next to 3.
        #expect(placement.physicalToLogical == [0, 1, 3, 2])
        #expect(plan.restores == [.init(layer: 0, slot: 2, expert: 3), .init(layer: 0, slot: 3, expert: 2)])
        #expect(Set(placement.physicalToLogical) == [0, 1, 2, 3], "every expert has a slot")
    }

    @Test func tooFewSurvivingSlotsAreRefusedWithTheMinimum() throws {
        let old = try ExpertPlacement.initial(logicalExperts: 8, ranks: 4)
        #expect(throws: PlacementError.tooFewSlots(ranks: 3, slotsPerRank: 2, experts: 8)) {
            _ = try RecoveryPlacement.plan(current: Self.current(old, layers: 1), lost: [2])
        }
        #expect(throws: PlacementError.tooFewSlots(ranks: 0, slotsPerRank: 2, experts: 8)) {
            _ = try RecoveryPlacement.plan(current: Self.current(old, layers: 1), lost: [0, 1, 2, 3])
        }
    }

    @Test func twoLostRanksAtOnce() throws {
        let old = try ExpertPlacement.initial(logicalExperts: 4, ranks: 4, redundantExperts: 4)
        let plan = try RecoveryPlacement.plan(current: [old], lost: [0, 3])
        #expect(plan.survivors == [1, 2])
        let placement = try #require(plan.placements[0])
        #expect(Set(placement.physicalToLogical) == [0, 1, 2, 3])
        // Each restore names a slot that now holds its expert.
        for restore in plan.restores { #expect(placement.physicalToLogical[restore.slot.index] == restore.expert) }
    }
}
