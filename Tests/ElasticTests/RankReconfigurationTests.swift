import Elastic
import Testing

/// A rank's side of prepare, commit and abandon, driven by hand.
struct RankReconfigurationTests {
    static func command(_ generation: Int, _ action: ControlCommand.Action) -> ControlCommand {
        ControlCommand(id: generation * 10, generation: generation, action: action)
    }

    @Test func aStayingRankReportsOnceItsPreparationAndTheMovesAreDoneThenSwitches() throws {
        var rank = RankReconfiguration(rank: 1)
        #expect(try rank.carryOut(Self.command(2, .prepare(size: 3)), servingGeneration: 1, isMovingExperts: false)
                == .prepare(generation: 2, size: 3, prepares: true))
        #expect(rank.report(isMovingExperts: false) == nil, "its preparation still runs")
        rank.preparationEnded(.ready, generation: 2)
        #expect(rank.report(isMovingExperts: true) == nil, "experts still move")
        #expect(rank.report(isMovingExperts: false) == .prepared(generation: 2))
        #expect(rank.report(isMovingExperts: false) == nil, "reported once")
        #expect(throws: RankReconfiguration.Violation.self) {
            try rank.carryOut(Self.command(2, .commit), servingGeneration: 1, isMovingExperts: true)
        }
        #expect(try rank.carryOut(Self.command(2, .commit), servingGeneration: 1, isMovingExperts: false) == .switchGroups(generation: 2))
        #expect(rank.pending == nil)
    }

    @Test func aLeavingRankPreparesNothingReportsAtOnceAndLeavesAtTheCommit() throws {
        var rank = RankReconfiguration(rank: 2)
        #expect(try rank.carryOut(Self.command(3, .prepare(size: 2)), servingGeneration: 2, isMovingExperts: false)
                == .prepare(generation: 3, size: 2, prepares: false))
        #expect(rank.report(isMovingExperts: false) == .prepared(generation: 3))
        #expect(try rank.carryOut(Self.command(3, .commit), servingGeneration: 2, isMovingExperts: false) == .leave(generation: 3))
    }

    @Test func aFailedPreparationIsReportedAndAbandonDropsIt() throws {
        var rank = RankReconfiguration(rank: 0)
        _ = try rank.carryOut(Self.command(4, .prepare(size: 2)), servingGeneration: 3, isMovingExperts: false)
        rank.preparationEnded(.failed("no peer"), generation: 4)
        #expect(rank.report(isMovingExperts: false) == .failed(generation: 4, reason: "no peer"))
        #expect(try rank.carryOut(Self.command(5, .abandon), servingGeneration: 3, isMovingExperts: false) == nil, "another generation's")
        #expect(try rank.carryOut(Self.command(4, .abandon), servingGeneration: 3, isMovingExperts: false) == .abandon(generation: 4))
        #expect(rank.pending == nil)
        // A new prepare may follow; the old preparation ending late changes nothing.
        _ = try rank.carryOut(Self.command(5, .prepare(size: 2)), servingGeneration: 3, isMovingExperts: false)
        rank.preparationEnded(.ready, generation: 4)
        #expect(rank.report(isMovingExperts: false) == nil)
    }

    @Test func commandsOutOfTurnAreViolationsOrStale() throws {
        var rank = RankReconfiguration(rank: 0)
        // A commit the rank carried out already (a newcomer joins after the prepare) changes nothing.
        #expect(try rank.carryOut(Self.command(2, .commit), servingGeneration: 2, isMovingExperts: false) == nil)
        #expect(throws: RankReconfiguration.Violation.self) {
            try rank.carryOut(Self.command(3, .commit), servingGeneration: 2, isMovingExperts: false)
        }
        _ = try rank.carryOut(Self.command(3, .prepare(size: 2)), servingGeneration: 2, isMovingExperts: false)
        #expect(throws: RankReconfiguration.Violation.self) {
            try rank.carryOut(Self.command(4, .prepare(size: 2)), servingGeneration: 2, isMovingExperts: false)
        }
        // A commit before this staying rank's standby group stands.
        #expect(throws: RankReconfiguration.Violation.self) {
            try rank.carryOut(Self.command(3, .commit), servingGeneration: 2, isMovingExperts: false)
        }
    }
}
