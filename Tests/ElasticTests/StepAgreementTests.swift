import Elastic
import Testing

/// The step-boundary decisions of a group's ranks, driven by hand: idle rounds and wakes, commands
/// carried out only where every rank has them, a prepare held back while experts move.
struct StepAgreementTests {
    static func command(_ id: Int, _ action: ControlCommand.Action) -> ControlCommand {
        ControlCommand(id: id, generation: 1, action: action)
    }

    @Test func idleRanksAskForOneWakeAndStepTogetherOnceWoken() {
        var rank = StepAgreement(startsIdle: true)
        #expect(rank.maySleep(wantsToStep: false))
        #expect(rank.whileIdle(wantsToStep: false) == .stayIdle(askWake: nil))
        // Work arrives: the rank asks for the next round once, then sleeps until the wake comes.
        #expect(!rank.maySleep(wantsToStep: true))
        #expect(rank.whileIdle(wantsToStep: true) == .stayIdle(askWake: 1))
        #expect(rank.whileIdle(wantsToStep: true) == .stayIdle(askWake: nil))
        #expect(rank.maySleep(wantsToStep: true))
        rank.receiveWake(round: 1)
        #expect(!rank.maySleep(wantsToStep: true))
        #expect(rank.whileIdle(wantsToStep: true) == .exchangeHeaders)
        #expect(!rank.isIdle)
        let headers = [rank.header(isBusy: true), StepAgreement.Header(isBusy: false, latestCommandID: 0, round: 1)]
        #expect(rank.decide(headers, isMovingExperts: false) == .step)
        #expect(rank.round == 1)
    }

    @Test func allRanksGoIdleAtTheSameRoundWhenNoneIsBusy() {
        var behind = StepAgreement(startsIdle: false), ahead = StepAgreement(startsIdle: false)
        ahead.receiveWake(round: 3)
        _ = ahead.decide([StepAgreement.Header(isBusy: false, latestCommandID: 0, round: 3)], isMovingExperts: false)
        let headers = [behind.header(isBusy: false), ahead.header(isBusy: false)]
        #expect(behind.decide(headers, isMovingExperts: false) == .goIdle)
        #expect(ahead.decide(headers, isMovingExperts: false) == .goIdle)
        #expect(behind.round == ahead.round)
        #expect(behind.isIdle && ahead.isIdle)
        // The next wake is for the round after the one they agreed on.
        #expect(behind.whileIdle(wantsToStep: true) == .stayIdle(askWake: behind.round + 1))
    }

    @Test func aCommandRunsOnlyWhereEveryRankHasReceivedIt() {
        var first = StepAgreement(startsIdle: false), second = StepAgreement(startsIdle: false)
        let prepare = Self.command(4, .prepare(size: 3))
        first.receive(prepare)
        #expect(first.hasPendingCommands)
        var headers = [first.header(isBusy: true), second.header(isBusy: true)]
        #expect(first.decide(headers, isMovingExperts: false) == .step)
        #expect(second.decide(headers, isMovingExperts: false) == .step)
        second.receive(prepare)
        headers = [first.header(isBusy: true), second.header(isBusy: true)]
        #expect(first.decide(headers, isMovingExperts: false) == .carryOut(prepare))
        #expect(second.decide(headers, isMovingExperts: false) == .carryOut(prepare))
        #expect(!first.hasPendingCommands && !second.hasPendingCommands)
    }

    @Test func aPrepareWaitsForAMoveOfExpertsAndOtherCommandsDoNot() {
        var rank = StepAgreement(startsIdle: false)
        rank.receive(Self.command(1, .prepare(size: 2)))
        // Experts still move: the group keeps stepping (the move is work), the prepare waits.
        #expect(rank.decide([rank.header(isBusy: true)], isMovingExperts: true) == .step)
        #expect(rank.hasPendingCommands)
        #expect(rank.decide([rank.header(isBusy: true)], isMovingExperts: false) == .carryOut(Self.command(1, .prepare(size: 2))))
        rank.receive(Self.command(2, .abandon))
        #expect(rank.decide([rank.header(isBusy: false)], isMovingExperts: true) == .carryOut(Self.command(2, .abandon)))
    }

    @Test func aNewcomerCountsFromItsPrepareAndTakesCommandsInOrder() {
        var newcomer = StepAgreement(startsIdle: false, latestCommandID: 7)
        #expect(newcomer.header(isBusy: false).latestCommandID == 7)
        #expect(newcomer.takeCommand() == nil)
        newcomer.receive(Self.command(8, .commit))
        newcomer.receive(Self.command(9, .abandon))
        #expect(newcomer.latestCommandID == 9)
        #expect(newcomer.takeCommand() == Self.command(8, .commit))
        #expect(newcomer.takeCommand() == Self.command(9, .abandon))
        #expect(newcomer.takeCommand() == nil)
    }
}
