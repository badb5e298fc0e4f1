import Experts
import Testing

struct RecoveryPlacementTests {
    /// The same placement in every layer but the dense first one.
    static func current(_ placement: ExpertPlacement, layers: Int) -> [ExpertPlacement?] {
        [nil] + (0..<layers).map { _ in placement }
    }

    /// The plan for the survivors of `current` once ranks `lost` are gone, from what the survivors hold.
    static func plan(current: [ExpertPlacement?], lost: Set<Int>) throws -> RecoveryPlacement {
        let first = current.compactMap { $0 }.first!
        let survivors = (0..<first.rankCount).filter { !lost.contains($0) }
        let held = current.map { placement in placement.map { p in survivors.flatMap { p.logicalExperts(onRank: $0).map { Optional($0) } } } }
        return try RecoveryPlacement.plan(held: held, ranks: survivors.count, experts: first.logicalExpertCount)
    }

    @Test func survivorsKeepTheirSlotsWhenEveryExpertHasACopyLeft() throws {
        // 6 experts + 6 copies over 3 ranks: ranks 0 and 2 together still hold every expert.
        let old = try ExpertPlacement(logicalExpertCount: 6, rankCount: 3, physicalToLogical: [0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5])
        let plan = try Self.plan(current: Self.current(old, layers: 2), lost: [1])
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
        let plan = try Self.plan(current: [old], lost: [1])
        let placement = try #require(plan.placements[0])
        // Expert 0 (three copies) gives its last slot to 2, then (two left, the most) its next to 3.
        #expect(placement.physicalToLogical == [0, 1, 3, 2])
        #expect(plan.restores == [.init(layer: 0, slot: 2, expert: 3), .init(layer: 0, slot: 3, expert: 2)])
        #expect(Set(placement.physicalToLogical) == [0, 1, 2, 3], "every expert has a slot")
    }

    @Test func tooFewSurvivingSlotsAreRefusedWithTheMinimum() throws {
        let old = try ExpertPlacement.initial(logicalExperts: 8, ranks: 4)
        #expect(throws: PlacementError.tooFewSlots(ranks: 3, slotsPerRank: 2, experts: 8)) {
            _ = try Self.plan(current: Self.current(old, layers: 1), lost: [2])
        }
        #expect(throws: PlacementError.tooFewSlots(ranks: 0, slotsPerRank: 0, experts: 8)) {
            _ = try Self.plan(current: Self.current(old, layers: 1), lost: [0, 1, 2, 3])
        }
    }

    @Test func twoLostRanksAtOnce() throws {
        let old = try ExpertPlacement.initial(logicalExperts: 4, ranks: 4, redundantExperts: 4)
        let plan = try Self.plan(current: [old], lost: [0, 3])
        let placement = try #require(plan.placements[0])
        #expect(Set(placement.physicalToLogical) == [0, 1, 2, 3])
        // Each restore names a slot that now holds its expert.
        for restore in plan.restores { #expect(placement.physicalToLogical[restore.slot.index] == restore.expert) }
    }

    @Test func aSlotAMoveBrokeOffInTakesAnOrphanFirstAndOtherwiseTheScarcestExpert() throws {
        // Two survivors of 2 slots, 3 experts: slot 1 holds nothing usable, expert 2 has no copy.
        let plan = try RecoveryPlacement.plan(held: [nil, [0, nil, 1, 0]], ranks: 2, experts: 3)
        #expect(plan.placements[1]?.physicalToLogical == [0, 2, 1, 0])
        #expect(plan.restores == [.init(layer: 1, slot: 1, expert: 2)])
        // No orphan: the broken slot gets a copy of expert 1, the one with the fewest.
        let spare = try RecoveryPlacement.plan(held: [[0, nil, 1, 0]], ranks: 2, experts: 2)
        #expect(spare.placements[0]?.physicalToLogical == [0, 1, 1, 0])
        #expect(spare.restores == [.init(layer: 0, slot: 1, expert: 1)])
    }
}
