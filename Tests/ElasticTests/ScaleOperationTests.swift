import Elastic
import Testing

/// The front end's reconfiguration state machine, driven by hand: every path of scale up and
/// down, and the faults that roll them back.
struct ScaleOperationTests {
    @Test func scaleUpPreparesEveryRankThenCommitsThenRoutes() {
        var (operation, start) = ScaleOperation.start(from: 2, to: 4)
        #expect(start == [.startRanks(2..<4), .sendPrepare(to: 0..<2)])
        for rank: RankID in [3, 0, 2] { #expect(operation.handle(.prepared(rank: rank)).isEmpty) }
        #expect(operation.handle(.prepared(rank: 1)) == [.sendCommit(to: 0..<4)])
        #expect(operation.phase == .committing)
        for rank in Range(ranks: 0, 3) { #expect(operation.handle(.switched(rank: rank)).isEmpty) }
        #expect(operation.handle(.switched(rank: 3)) == [.routeTo(count: 4), .finish])
        #expect(operation.phase == .done)
    }

    @Test func scaleDownMigratesAndWaitsForTheLeavingRanksToDrain() {
        var (operation, start) = ScaleOperation.start(from: 4, to: 3)
        #expect(start == [.routeOnlyTo(first: 3), .migrate(from: 3), .sendPrepare(to: 0..<4)])
        for rank in Range(ranks: 0, 4) { #expect(operation.handle(.prepared(rank: rank)).isEmpty) }
        #expect(operation.handle(.drained) == [.retire(3..<4), .sendCommit(to: 0..<4)])
        #expect(operation.handle(.switched(rank: 3)).isEmpty)
        // The leaving rank closes its connection after switching: expected, not a failure.
        #expect(operation.handle(.failed(rank: 3, reason: "connection closed")).isEmpty)
        for rank in Range(ranks: 0, 2) { #expect(operation.handle(.switched(rank: rank)).isEmpty) }
        #expect(operation.handle(.switched(rank: 2)) == [.routeTo(count: 3), .finish])
    }

    @Test func aNewcomerThatDiesWhilePreparingRollsBack() {
        var (operation, _) = ScaleOperation.start(from: 2, to: 4)
        _ = operation.handle(.prepared(rank: 0))
        let actions = operation.handle(.failed(rank: 2, reason: "exited with status 1"))
        #expect(actions == [.sendAbandon(to: 0..<4), .stopRanks(2..<4), .fail("exited with status 1")])
        #expect(operation.phase == .failed)
        #expect(operation.handle(.prepared(rank: 1)).isEmpty, "a failed operation ignores late events")
    }

    @Test func aTimeoutWhilePreparingNamesTheMissingRanks() {
        var (operation, _) = ScaleOperation.start(from: 3, to: 2)
        _ = operation.handle(.prepared(rank: 0))
        let actions = operation.handle(.timedOut)
        guard case .fail(let reason)? = actions.last else {
            Issue.record("no failure in \(actions)")
            return
        }
        #expect(reason.contains("[1, 2]") && reason.contains("leaving ranks"))
        #expect(actions.prefix(2) == [.sendAbandon(to: 0..<3), .routeTo(count: 3)])
    }

    @Test func aLeavingRankLostDuringTheCommitHasLeft() {
        var (operation, _) = ScaleOperation.start(from: 3, to: 2)
        for rank in 0..<3 { _ = operation.handle(.prepared(rank: RankID(rank))) }
        _ = operation.handle(.drained)
        #expect(operation.phase == .committing)
        #expect(operation.handle(.failed(rank: 2, reason: "gone")) == [])
        _ = operation.handle(.switched(rank: 0))
        #expect(operation.handle(.switched(rank: 1)) == [.routeTo(count: 2), .finish])
        #expect(operation.phase == .done)
    }

    @Test func aStayingRankThatFailsDuringTheCommitFailsTheOperation() {
        var (operation, _) = ScaleOperation.start(from: 1, to: 2)
        _ = operation.handle(.prepared(rank: 0))
        _ = operation.handle(.prepared(rank: 1))
        #expect(operation.handle(.failed(rank: 0, reason: "gone")) == [.fail("rank 0 failed during the commit: gone")])
        #expect(operation.phase == .failed)
    }
}
