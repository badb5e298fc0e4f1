/// What the ranks of a group do at each step boundary, decided alike on every rank from what each
/// has received and every rank's header: step together, go idle together, or carry out a control
/// command together. Pure: ``RankLoop`` feeds it what arrives and the all-gathered headers, and does
/// what it decides.
///
/// Ranks that go idle count idle rounds; a rank that gets work while idle asks the front end for a
/// wake of the next round (once), and the front end wakes every rank for it, so all of them start
/// stepping again (vLLM's "start wave"). A command runs at the first boundary where every header
/// shows it received, so every rank carries it out at the same step; a prepare waits while experts
/// move (every rank sees the same move state).
public struct StepAgreement: Sendable, Equatable {
    /// What each rank tells the others before a step.
    public struct Header: Sendable, Equatable {
        public var isBusy: Bool
        /// The latest control command this rank has received.
        public var latestCommandID: Int
        public var round: Int

        public init(isBusy: Bool, latestCommandID: Int, round: Int) {
            self.isBusy = isBusy
            self.latestCommandID = latestCommandID
            self.round = round
        }
    }

    /// What an idle rank does before the headers.
    public enum IdleChoice: Sendable, Equatable {
        /// Woken (or not idle): exchange headers.
        case exchangeHeaders
        /// Not woken: no headers this time; ask the front end for a wake of that round first (once).
        case stayIdle(askWake: Int?)
    }

    /// What all ranks do once they have every header.
    public enum Decision: Sendable, Equatable {
        case carryOut(ControlCommand)
        /// No rank is busy: all go idle at this same round.
        case goIdle
        /// Some rank is busy: all step, those without work on a padding token.
        case step
    }

    public private(set) var round = 0
    public private(set) var isIdle: Bool
    public private(set) var latestCommandID: Int
    private var wokenFor = 0
    private var askedFor = 0
    private var commands: [ControlCommand] = []

    /// - Parameters:
    ///   - latestCommandID: where a newcomer starts counting (the prepare it was started for), or
    ///     a recovered group (its recover command).
    ///   - round: where a recovered group starts (past every wake the front end has sent).
    public init(startsIdle: Bool, latestCommandID: Int = 0, round: Int = 0) {
        isIdle = startsIdle
        self.latestCommandID = latestCommandID
        self.round = round
    }

    public var hasPendingCommands: Bool { !commands.isEmpty }

    public mutating func receive(_ command: ControlCommand) {
        latestCommandID = max(latestCommandID, command.id)
        commands.append(command)
    }

    public mutating func receiveWake(round target: Int) { wokenFor = max(wokenFor, target) }

    /// A newcomer takes the commands in the order they came, until its commit (it does not step until then).
    public mutating func takeCommand() -> ControlCommand? { commands.isEmpty ? nil : commands.removeFirst() }

    /// Whether the loop may sleep until a message comes: idle, not woken past this round, and a wake
    /// already asked for any work it has (`wantsToStep`).
    public func maySleep(wantsToStep: Bool) -> Bool { isIdle && wokenFor <= round && (!wantsToStep || askedFor > round) }

    /// Before the headers: an idle rank not woken for a later round stays idle.
    public mutating func whileIdle(wantsToStep: Bool) -> IdleChoice {
        guard isIdle else { return .exchangeHeaders }
        if wokenFor > round {
            isIdle = false
            return .exchangeHeaders
        }
        guard wantsToStep && askedFor <= round else { return .stayIdle(askWake: nil) }
        askedFor = round + 1
        return .stayIdle(askWake: round + 1)
    }

    public func header(isBusy: Bool) -> Header { Header(isBusy: isBusy, latestCommandID: latestCommandID, round: round) }

    /// After every rank's header, the same on every rank: the rounds meet at the highest; the first
    /// command every rank has received runs (a prepare not while experts move); with no rank busy all
    /// go idle; otherwise all step.
    public mutating func decide(_ headers: [Header], isMovingExperts: Bool) -> Decision {
        round = max(round, headers.map(\.round).max() ?? round)
        let agreed = headers.map(\.latestCommandID).min() ?? 0
        if let command = commands.first, command.id <= agreed, !isMovingExperts || !command.isPrepare {
            commands.removeFirst()
            return .carryOut(command)
        }
        guard headers.contains(where: \.isBusy) else {
            round += 1
            isIdle = true
            return .goIdle
        }
        return .step
    }
}
