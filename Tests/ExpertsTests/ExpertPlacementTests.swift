import Experts
import Testing

struct ExpertPlacementTests {
    @Test func theFirstLayoutGivesEachRankAContiguousShare() throws {
        let placement = try ExpertPlacement.initial(logicalExperts: 8, ranks: 4)
        #expect(placement.slotsPerRank == 2)
        #expect((0..<4).map { Array(placement.logicalExperts(onRank: $0)) } == [[0, 1], [2, 3], [4, 5], [6, 7]])
        #expect(placement.logicalToPhysical == (0..<8).map { [PhysicalSlot($0)] })
        #expect(placement.slot(for: 5, position: 123) == 5 && placement.rank(ofSlot: 5) == 2)
    }

    @Test func redundantSlotsHoldCopiesAndTokensTakeReplicasInTurn() throws {
        // 6 experts + 2 copies over 4 ranks: 2 slots each; ranks get 1 or 2 originals.
        let placement = try ExpertPlacement.initial(logicalExperts: 6, ranks: 4, redundantExperts: 2)
        #expect(placement.physicalToLogical == [0, 0, 1, 2, 3, 1, 4, 5])
        #expect(placement.logicalToPhysical[0] == [0, 1] && placement.logicalToPhysical[1] == [2, 5])
        #expect((0..<4).map { placement.slot(for: 1, position: $0) } == [2, 5, 2, 5])
    }

    @Test func unevenSlotCountsAreRefusedWithTheSizesThatWork() {
        #expect(throws: PlacementError.uneven(slots: 8, ranks: 3, validRankCounts: [1, 2, 4, 8])) {
            try ExpertPlacement.initial(logicalExperts: 8, ranks: 3)
        }
        let message = "\(PlacementError.uneven(slots: 8, ranks: 3, validRankCounts: [1, 2, 4, 8]))"
        #expect(message.contains("1, 2, 4, 8"))
        #expect(throws: PlacementError.expertWithoutSlot(1)) {
            try ExpertPlacement(logicalExpertCount: 2, rankCount: 1, physicalToLogical: [0, 0])
        }
    }
}

struct ExpertLoadWindowTests {
    @Test func keepsTheLastStepsAndMeasuresBalance() {
        var window = ExpertLoadWindow(capacity: 2, width: 4)
        window.record([1, 0, 0, 0])
        window.record([0, 2, 0, 0])
        window.record([0, 0, 3, 1])
        #expect(window.totals == [0, 2, 3, 1], "the oldest step left the window")
        // One layer of 4 slots over 2 ranks: loads 2 and 4 → mean 3 / max 4.
        #expect(ExpertLoadWindow.balancedness(window.totals, slotsPerLayer: 4, ranks: 2) == 0.75)
        // Two layers, one perfectly balanced, one idle.
        #expect(ExpertLoadWindow.balancedness([1, 1, 0, 0], slotsPerLayer: 2, ranks: 2) == 1)
    }

    /// Counts read between two records' boundaries join the newest record, and leave with it.
    @Test func countsAddedToTheNewestRecordLeaveWithIt() {
        var window = ExpertLoadWindow(capacity: 2, width: 2)
        window.addToNewest([5, 0])
        #expect(window.totals == [5, 0], "an empty window records them")
        window.record([0, 1])
        window.addToNewest([2, 2])
        #expect(window.totals == [7, 3])
        window.record([1, 1])
        #expect(window.totals == [3, 4], "the first record left; the second, with what was added to it, stays")
        window.addToNewest([10, 0])
        window.record([0, 0])
        #expect(window.totals == [11, 1], "added to the record at the end of the ring, which now leaves last")
    }
}
