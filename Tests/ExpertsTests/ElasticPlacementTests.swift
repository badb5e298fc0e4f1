import Experts
import Testing

struct ElasticPlacementTests {
    static func current(_ placement: ExpertPlacement, layers: Int) -> [ExpertPlacement?] {
        [nil] + [ExpertPlacement?](repeating: placement, count: layers)
    }

    @Test func growingKeepsTheOldSlotsAndFillsTheNewRanksFromTheTarget() throws {
        let old = try ExpertPlacement.initial(logicalExperts: 12, ranks: 2)
        // Expert 0 is hot: the target gives it copies.
        var totals = [Int64](repeating: 1, count: 2 * 12)
        totals[0] = 500
        totals[12] = 500
        let plan = try ElasticPlacement.plan(current: Self.current(old, layers: 2), totals: totals, newSize: 4)
        #expect(plan.intermediate[0] == nil && plan.target[0] == nil)
        for layer in 1...2 {
            let intermediate = plan.intermediate[layer]!, target = plan.target[layer]!
            #expect(intermediate.rankCount == 4 && target.rankCount == 4 && target.slotsPerRank == 6)
            #expect(Array(intermediate.physicalToLogical.prefix(12)) == old.physicalToLogical)
            #expect(Array(intermediate.physicalToLogical.suffix(12)) == Array(target.physicalToLogical.suffix(12)))
            #expect(target.logicalToPhysical[0].count > 1, "the hot expert is replicated")
        }
    }

    @Test func shrinkingPutsEveryExpertOnTheStayingRanksFirst() throws {
        let old = try ExpertPlacement.initial(logicalExperts: 12, ranks: 4, redundantExperts: 12)
        let plan = try ElasticPlacement.plan(current: Self.current(old, layers: 1), totals: [Int64](repeating: 3, count: 24),
                                             newSize: 2)
        let intermediate = plan.intermediate[1]!, target = plan.target[1]!
        #expect(intermediate.rankCount == 4 && target.rankCount == 2)
        #expect(Array(intermediate.physicalToLogical.prefix(12)) == target.physicalToLogical)
        #expect(Array(intermediate.physicalToLogical.suffix(12)) == Array(old.physicalToLogical.suffix(12)))
        #expect(Set(target.physicalToLogical) == Set(experts(0..<12)), "every expert stays")
    }

    /// One rank with a slot per expert holds them in logical order, whatever order the slots had.
    @Test func shrinkingToOneRankPutsTheExpertsInOrder() throws {
        let old = try ExpertPlacement(logicalExpertCount: 6, rankCount: 2, physicalToLogical: [3, 1, 0, 5, 2, 4, 0, 1, 2, 3, 4, 5])
        let plan = try ElasticPlacement.plan(current: Self.current(old, layers: 1), totals: [Int64](repeating: 2, count: 12),
                                             newSize: 1)
        #expect(plan.target[1]!.physicalToLogical == experts(0..<6))
        #expect(plan.intermediate[1]!.physicalToLogical == experts(0..<6) + [0, 1, 2, 3, 4, 5])
    }

    @Test func tooFewRanksAreRefusedWithTheMinimum() throws {
        let old = try ExpertPlacement.initial(logicalExperts: 12, ranks: 2)
        #expect(ElasticPlacement.minimumSize(experts: 12, slotsPerRank: 6) == 2)
        #expect(throws: PlacementError.tooFewSlots(ranks: 1, slotsPerRank: 6, experts: 12)) {
            try ElasticPlacement.plan(current: Self.current(old, layers: 1), totals: [Int64](repeating: 0, count: 12), newSize: 1)
        }
    }
}
