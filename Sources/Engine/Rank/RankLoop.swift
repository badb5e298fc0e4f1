import Checkpoint
import Compute
public import Elastic
public import Experts
import Foundation
import Messages
public import Models
public import Parallelism
import Scheduling
public import Transport

/// The step loop of an engine rank in its own process: takes requests from the front end's
/// connection, steps its ``EngineCore``, and sends each step's outputs back in one message.
///
/// With a group (expert parallelism), ranks step together: before each step they all-gather a
/// header (has work, latest control command received, idle round). If one has work, all step
/// (those without on a padding token, for the MoE exchanges); if none has, all go idle at the same
/// round and stay idle until the front end sends `wake(round + 1)` — which a rank that gets work
/// while idle asks for with `needWake`. A control command runs at the first boundary where every
/// header shows it received, so every rank of the group carries it out at the same step. Those
/// decisions are ``StepAgreement``'s; the loop exchanges the headers and does what it decides.
///
/// Reconfiguration (``ControlCommand``, decided by ``RankReconfiguration``): `prepare` plans the new placement from the all-reduced
/// load window and, on ranks that stay, forms the standby group on a thread of its own while the
/// loop serves (growing: and sends the newcomers their weights); shrinking also moves experts off
/// the leaving ranks, a layer per step, over the current group. The rank reports `prepared` when
/// its part is done. `commit` switches to the standby group between two steps (leaving ranks
/// exit); `abandon` drops the standby group.
///
/// Healing (with a `checkpoint` to restore experts from): when the group breaks (a collective or
/// an exchange fails: a member was lost), the rank keeps its requests and KV cache, sends what
/// its completed steps produced, reports `broken` and waits, taking requests, for the front
/// end's `recover`: then the survivors form a new group (``GroupRecovery``), renumbered, and step
/// again from the step that broke. A `recover` that comes while a collective waits interrupts it.
///
/// Threads: the loop runs on the caller's thread and owns the core, the groups and all writes to
/// the connection but heartbeat answers; a reader thread decodes frames into the ``RankInbox`` and
/// answers heartbeats itself (``FrontEndConnection``), and a preparation
/// thread only tells it when it is done. Neither holds the loop itself.
public final class RankLoop {
    /// What a rank that joins a growing cluster brings to its loop.
    public struct Newcomer {
        public let generation: Int
        public let target: [ExpertPlacement?]
        public let prepareCommandID: Int

        public init(generation: Int, target: [ExpertPlacement?], prepareCommandID: Int) {
            self.generation = generation
            self.target = target
            self.prepareCommandID = prepareCommandID
        }
    }

    private let core: EngineCore
    private var group: StatelessGroup? {
        didSet { registerInterruption() }
    }
    /// This rank's index in its group (a recovery renumbers the survivors).
    private var rank: Int
    private let frontEnd: FrontEndConnection
    private let collectiveTimeout: Duration
    private let dispatch: ExpertParallelDispatch?
    private let eplb: EPLB?
    private let access: ClusterAccess?
    private let inbox = RankInbox()
    // The loop's thread only (sinks run inside the core's calls on that thread).
    private var outbox: [EngineOutput] = []
    private var stepCount = 0
    private var lastStepSeconds = 0.0
    private var agreement: StepAgreement
    private var reconfiguration: RankReconfiguration
    /// What the loop holds for the pending reconfiguration: the planned placement, and this rank's
    /// preparation with the transport it joins.
    private var standby: (placement: ElasticPlacement, preparation: Preparation?)?
    private typealias Preparation = (thread: StandbyPreparation, transport: any StandbyTransport)
    /// Preparations abandoned while their thread still ran, kept until it settles: what they
    /// reserved is then released here, on the thread that owns the backend.
    private var abandoned: [Preparation] = []
    private var preparationCount = 0
    private var joining: Newcomer?
    private let standbyTransports: StandbyTransports?
    /// Where experts lost with a peer are restored from; `nil`: a broken group ends the rank.
    private let checkpoint: (() throws -> any WeightSource)?
    /// Why the group broke, while this rank waits for the front end's recovery.
    private var broken: String?
    /// The newest recovery the front end asked for, not yet carried out.
    private var recovery: ControlCommand?
    /// Slots (rows, by decoder layer) of this rank that hold no expert's weights until a recovery
    /// fills them: a move or a restore broke off while writing them.
    private var brokenSlots: [Int: Set<Int>] = [:]
    /// Called with each command this rank is about to carry out (the fault tests end the process there).
    private let beforeCommand: ((ControlCommand, _ rank: Int) -> Void)?

    public init(core: EngineCore, group: StatelessGroup?, rank: Int = 0, connection: TCPSocket, collectiveTimeout: Duration,
                dispatch: ExpertParallelDispatch? = nil, eplb: EPLB? = nil, access: ClusterAccess? = nil,
                newcomer: Newcomer? = nil, standbyTransports: StandbyTransports? = nil,
                checkpoint: (() throws -> any WeightSource)? = nil, beforeCommand: ((ControlCommand, _ rank: Int) -> Void)? = nil) {
        self.core = core
        self.group = group
        self.rank = rank
        frontEnd = FrontEndConnection(connection)
        self.collectiveTimeout = collectiveTimeout
        self.dispatch = dispatch
        self.eplb = eplb
        self.access = access
        joining = newcomer
        reconfiguration = RankReconfiguration(rank: RankID(rank))
        agreement = StepAgreement(startsIdle: group != nil && newcomer == nil, latestCommandID: newcomer?.prepareCommandID ?? 0)
        self.standbyTransports = standbyTransports
        self.checkpoint = checkpoint
        self.beforeCommand = beforeCommand
        registerInterruption()
    }

    /// What a recovery interrupts from the reader thread: the group's collectives and, with a
    /// device exchange, its layers' waits (through a stream made here, on the loop's thread).
    private func registerInterruption() {
        var device: ExchangeInterruption?
        if group != nil, let exchange = dispatch?.exchange, let stream = try? core.backend.makeTransferStream() {
            device = ExchangeInterruption(stream: stream, poison: exchange.poison)
        } else if group != nil, let flag = dispatch?.collectives?.interruption {
            device = ExchangeInterruption(flag: flag)
        }
        inbox.interrupts(group, device: device)
    }

    /// Serves until the front end goes away or the rank leaves the cluster (returns), or the rank
    /// cannot go on (throws, after ending its requests with the reason).
    public func run() throws {
        try core.backend.attachCurrentThread()
        let reader = Thread { [inbox, frontEnd] in Self.readFrames(from: frontEnd, into: inbox) }
        reader.name = "flexpert-rank-reader"
        reader.start()
        do {
            try loop()
        } catch {
            standby?.preparation?.thread.cancel()
            // Outputs not yet sent are of the step that failed (a poisoned exchange's are garbage).
            outbox.removeAll()
            // A cluster that heals moves this rank's requests elsewhere once its connection closes.
            if checkpoint == nil {
                core.finishAll(.error("rank failed: \(error)"))
                try? flush(statistics: true)
            }
            frontEnd.socket.close()
            throw error
        }
        standby?.preparation?.thread.cancel()
        core.finishAll(.abort)
        try? flush(statistics: true)
        frontEnd.socket.close()
    }

    private func loop() throws {
        var messages: [EngineMessage] = []
        while true {
            let sleeps = broken != nil || (group == nil ? !core.hasWork : joining != nil || agreement.maySleep(wantsToStep: wantsToStep))
            let awaited = reconfiguration.pending?.isReported == false ? standby?.preparation?.thread.id : nil
            let gone = inbox.take(into: &messages, sleeps: sleeps, awaiting: awaited)
            for message in messages {
                switch message {
                case .add(let request): core.add(request) { [self] in outbox.append($0) }
                case .abort(let id): core.abort(id)
                case .wake(let target): agreement.receiveWake(round: target)
                case .control(let command):
                    if case .recover = command.action {
                        if command.generation > recovery?.generation ?? -1 { recovery = command }
                    } else if broken == nil {
                        agreement.receive(command)
                    }
                case .hello, .outputs, .statistics, .needWake, .report, .heartbeat: continue
                }
            }
            messages.removeAll(keepingCapacity: true)
            if gone != nil { return }
            if let command = recovery {
                recovery = nil
                if broken == nil, let group { try breakGroup(group, "the front end asked for a recovery: a member is lost") }
                try recover(command)
                continue
            }
            if broken != nil {
                try flush(statistics: false)
                continue
            }
            try reportPreparation()

            guard let group else {
                if core.hasWork { try step(padding: false) }
                try flush(statistics: false)
                continue
            }
            do {
                if try stepTogether(in: group) == .leave { return }
            } catch where checkpoint != nil && dispatch != nil && access != nil {
                try breakGroup(group, "\(error)")
            }
        }
    }

    /// One round of the group's lockstep: a newcomer's wait for its commit, an idle round, or the
    /// headers and then a step, a control command or going idle.
    private func stepTogether(in group: StatelessGroup) throws -> Continuation {
        if let newcomer = joining {
            // A newcomer waits for the commit, then steps with the group from the same boundary as the others.
            guard let command = agreement.takeCommand() else { return .stay }
            guard command.generation == newcomer.generation else { return .stay }
            if command.action == .abandon { return .leave }
            guard command.action == .commit else { return .stay }
            joining = nil
            eplb?.move(to: newcomer.target)
            try send(.report(rank: RankID(rank), .switched(generation: newcomer.generation)))
        }
        if case .stayIdle(let round) = agreement.whileIdle(wantsToStep: wantsToStep) {
            if let round { try send(.needWake(round: round)) }
            try flush(statistics: false)
            return .stay
        }
        let headers = try group.allGather(Self.encode(agreement.header(isBusy: wantsToStep)), timeout: collectiveTimeout)
            .map { try Self.decodeHeader($0) }
        switch agreement.decide(headers, isMovingExperts: eplb?.isMoving ?? false) {
        case .carryOut(let command):
            return try carryOut(command)
        case .goIdle:
            try flush(statistics: true)
            return .stay
        case .step:
            break
        }
        let padding = !core.hasWork
        try step(padding: true)
        try eplb?.afterStep(padding: padding, group: group, timeout: collectiveTimeout)
        try flush(statistics: false)
        return .stay
    }

    /// The group cannot go on (`reason`): drops it and whatever reconfiguration ran, keeps the
    /// requests (the step that broke left them as they were), sends what completed steps made,
    /// and tells the front end, which answers with a recovery.
    private func breakGroup(_ group: StatelessGroup, _ reason: String) throws {
        let generation = group.generation
        group.close()
        if let preparation = standby?.preparation {
            preparation.thread.cancel()
            abandoned.append(preparation)
        }
        standby = nil
        reconfiguration = RankReconfiguration(rank: RankID(rank))
        if let (layer, slots) = eplb?.rebalancer?.abandonMove() { brokenSlots[layer, default: []].formUnion(slots) }
        broken = reason
        FileHandle.standardError.write(Data("flexpert engine: rank \(rank): group \(generation) broke (\(reason)); waiting for the front end's recovery\n".utf8))
        try flush(statistics: true)
        try send(.report(rank: RankID(rank), .broken(generation: generation, reason: reason)))
    }

    /// Carries out the front end's `recover`: this rank serves in the new group from the next
    /// step. A failure leaves the rank broken and says why; a later recovery may succeed.
    private func recover(_ command: ControlCommand) throws {
        guard case .recover(let assigned, let size, let round) = command.action else { return }
        beforeCommand?(command, rank)
        let newRank = assigned.index
        guard let dispatch, let access, let checkpoint else {
            throw TransportError.protocolViolation("a recovery needs expert parallelism and a checkpoint")
        }
        let started = ContinuousClock.now
        var held: [[LogicalExpert?]?] = dispatch.placements.map { placement in
            placement.map { placement in placement.logicalExperts(onRank: rank).map { Optional($0) } }
        }
        for (layer, slots) in brokenSlots {
            for slot in slots { held[layer]?[slot] = nil }
        }
        let experts = core.model.configuration.moe.expertCount
        let outcome: GroupRecovery.Outcome
        do {
            outcome = try GroupRecovery.run(
                generation: command.generation, rank: newRank, size: size, held: held, experts: experts,
                access: access, model: core.model, backend: core.backend, checkpoint: checkpoint, transports: standbyTransports,
                waitsOn: { [inbox] in inbox.recovering(through: $0) }, formed: { [inbox] in inbox.interrupts($0) }
            ) { [inbox] in inbox.hasRecovery(newerThan: command.generation) }
        } catch {
            if let failed = error as? GroupRecovery.RestoreFailed {
                for (layer, slot) in failed.slots { brokenSlots[layer, default: []].insert(slot) }
            }
            let reason = "rank \(rank) could not recover into generation \(command.generation): \(error)"
            FileHandle.standardError.write(Data("flexpert engine: \(reason)\n".utf8))
            inbox.interrupts(nil)
            try send(.report(rank: RankID(rank), .failed(generation: command.generation, reason: reason)))
            return
        }
        do {
            try dispatch.reconfigure(group: outcome.group, placements: outcome.placements, transport: outcome.transport)
        } catch {
            // The restored slots hold what the new placement says, which the dispatch does not route by.
            for (layer, slot) in outcome.restored { brokenSlots[layer, default: []].insert(slot) }
            outcome.group.close()
            try send(.report(rank: RankID(rank), .failed(generation: command.generation,
                                                         reason: "rank \(rank) could not switch to generation \(command.generation): \(error)")))
            return
        }
        eplb?.dispatchReconfigured()
        eplb?.isPaused = false
        core.discardStepGraphs()
        group?.close()
        group = outcome.group
        let oldRank = rank
        rank = newRank
        brokenSlots = [:]
        broken = nil
        joining = nil
        reconfiguration = RankReconfiguration(rank: RankID(newRank))
        agreement = StepAgreement(startsIdle: false, latestCommandID: command.id, round: round)
        let elapsed = ContinuousClock.now - started
        FileHandle.standardError.write(Data(String(
            format: "flexpert engine: rank %d (pid %d) is rank %d of %d in generation %d (%.3f s, %d experts restored)\n",
            oldRank, getpid(), newRank, size, command.generation, elapsed.seconds, outcome.restored.count).utf8))
        try send(.report(rank: RankID(newRank), .switched(generation: command.generation)))
    }

    /// Work that keeps the group stepping: requests, a move of experts, commands not yet carried out.
    private var wantsToStep: Bool { core.hasWork || (eplb?.isMoving ?? false) || agreement.hasPendingCommands }

    private enum Continuation { case stay, leave }

    /// Carries out `command`; every rank of the group does so at this same boundary.
    private func carryOut(_ command: ControlCommand) throws -> Continuation {
        beforeCommand?(command, rank)
        guard let group, let dispatch, let eplb, eplb.rebalancer != nil else {
            throw TransportError.protocolViolation("a reconfiguration needs expert parallelism")
        }
        switch try reconfiguration.carryOut(command, servingGeneration: group.generation, isMovingExperts: eplb.isMoving) {
        case nil: return .stay
        case .prepare(let generation, let size, let prepares)?:
            guard let access else { throw TransportError.protocolViolation("prepare of generation \(generation) without the cluster's store") }
            let totals = try group.allReduce(try eplb.currentWindowTotals(), .sum, timeout: collectiveTimeout)
            let placement = try ElasticPlacement.plan(current: dispatch.placements, totals: totals, newSize: size,
                                                      groups: core.model.configuration.moe.groups?.count ?? 1)
            eplb.isPaused = true
            // Every rank of the group moves (a collective), whether or not its own preparation starts.
            if size < group.size { eplb.move(to: placement.intermediate) }
            do {
                standby = (placement, prepares ? try preparation(generation: generation, size: size, placement: placement, group: group,
                                                                 access: access) : nil)
            } catch {
                // What the loop could not reserve (memory, a library) fails the reconfiguration, not the rank.
                standby = (placement, nil)
                reconfiguration.preparationEnded(.failed("rank \(rank) could not prepare generation \(generation): \(error)"),
                                                 generation: generation)
            }
            try reportPreparation()
            return .stay
        case .leave(let generation)?:
            resumeServing()
            try send(.report(rank: RankID(rank), .switched(generation: generation)))
            group.close()
            self.group = nil
            return .leave
        case .switchGroups(let generation)?:
            guard let (placement, preparation) = standby, let preparation, case .ready(let standbyGroup)? = preparation.thread.outcome else {
                throw TransportError.protocolViolation("commit of generation \(generation) without a standby group")
            }
            resumeServing()
            let growing = standbyGroup.size > group.size
            try dispatch.reconfigure(group: standbyGroup, placements: growing ? placement.intermediate : placement.target,
                                     transport: preparation.transport.transport())
            eplb.dispatchReconfigured()
            // Graphs recorded until now hold the old group's buffers; steps record anew as they come.
            core.discardStepGraphs()
            if growing { eplb.move(to: placement.target) }
            group.close()
            self.group = standbyGroup
            try send(.report(rank: RankID(rank), .switched(generation: generation)))
            return .stay
        case .abandon?:
            if let preparation = standby?.preparation {
                preparation.thread.cancel()
                abandoned.append(preparation)
            }
            resumeServing()
            return .stay
        }
    }

    /// This rank's preparation of the standby group of `generation`, on a thread of its own
    /// (growing: it also sends the newcomers their weights). What it needs of the backend is
    /// made here, on the loop's thread: the transport's memory and a transfer stream.
    private func preparation(generation: Int, size: Int, placement: ElasticPlacement, group: StatelessGroup,
                             access: ClusterAccess) throws -> Preparation {
        let plan = StandbyPlan(oldSize: group.size, size: size, placement: placement)
        let announce: (@Sendable (StatelessGroup) throws -> Void)?
        let exchange: (@Sendable (StatelessGroup, (any PeerMemory)?) throws -> Void)?
        let copies = try core.backend.makeTransferStream()
        if size > group.size {
            let dense = core.model.denseWeights, experts = core.model.layers.map(\.experts)
            let blocks = core.cache.blockCount, timeout = access.prepareTimeout
            announce = { standby in try StandbyExchange.announce(group: standby, plan: plan, timeout: timeout) }
            exchange = { standby, peer in
                try StandbyExchange.asExisting(group: standby, plan: plan, dense: dense, experts: experts, copies: copies,
                                               blockCount: blocks, timeout: timeout, peer: peer)
            }
        } else {
            (announce, exchange) = (nil, nil)
        }
        let slotsPerRank = (size > group.size ? placement.intermediate : placement.target).compactMap { $0 }.first?.slotsPerRank ?? 0
        let transport = try standbyTransports?(generation, rank, size, slotsPerRank) ?? HostStagedStandbyTransport()
        preparationCount += 1
        let id = preparationCount
        let preparation = StandbyPreparation(
            id: id, generation: generation, rank: rank, size: size, access: access, transport: transport, copies: copies,
            announce: announce, exchange: exchange
        ) { [inbox] in
            inbox.preparationSettled(id)
        }
        return (preparation, transport)
    }

    /// The reconfiguration is over (committed, left or abandoned): EPLB plans again.
    private func resumeServing() {
        if let id = standby?.preparation?.thread.id, !abandoned.contains(where: { $0.thread.id == id }) { inbox.forgetPreparation(id) }
        standby = nil
        eplb?.isPaused = false
    }

    /// Tells the front end once this rank's part of the preparation is done (or failed): the
    /// standby group stands and, when shrinking, the experts have moved off the leaving ranks.
    private func reportPreparation() throws {
        guard let pending = reconfiguration.pending, !pending.isReported else { return }
        switch standby?.preparation?.thread.outcome {
        case .ready?: reconfiguration.preparationEnded(.ready, generation: pending.generation)
        case .failed(let reason)?: reconfiguration.preparationEnded(.failed(reason), generation: pending.generation)
        case nil: break
        }
        if let report = reconfiguration.report(isMovingExperts: eplb?.isMoving ?? false) { try send(.report(rank: RankID(rank), report)) }
    }

    private func step(padding: Bool) throws {
        let started = ContinuousClock.now
        releaseSettledPreparations()
        // A preparation's thread uses the device beside the loop (the transport's join, NCCL's
        // and the driver's calls, its own stream): no capture on the loop's stream until every
        // one has settled, so that nothing another thread does can join or break it.
        core.recordsStepGraphs = standby?.preparation == nil && abandoned.isEmpty
        _ = try core.step(padsWhenIdle: padding)
        let elapsed = ContinuousClock.now - started
        stepCount += 1
        lastStepSeconds = elapsed.seconds
    }

    /// Drops the abandoned preparations whose thread has finished, here on the loop's thread.
    private func releaseSettledPreparations() {
        abandoned.removeAll { preparation in
            guard preparation.thread.outcome != nil else { return false }
            inbox.forgetPreparation(preparation.thread.id)
            return true
        }
    }

    private var lastStatistics = ContinuousClock.now - .seconds(1)

    /// Sends the step's outputs, and the rank's figures at most ten times a second (or now).
    private func flush(statistics now: Bool) throws {
        if !outbox.isEmpty {
            try send(.outputs(outbox))
            outbox.removeAll(keepingCapacity: true)
        }
        if now || ContinuousClock.now - lastStatistics > .milliseconds(100) {
            lastStatistics = .now
            var figures = core.statistics(stepCount: stepCount, lastStepSeconds: lastStepSeconds)
            if let eplb {
                figures.expertBalancedness = eplb.balancedness
                figures.expertRearrangements = eplb.rearrangementCount
                figures.expertsReceived = eplb.receivedExpertCount
                figures.expertMoveSeconds = eplb.moveSeconds
            }
            try send(.statistics(figures))
        }
    }

    private func send(_ message: EngineMessage) throws {
        try frontEnd.send(message, within: .seconds(30))
    }

    private static func encode(_ header: StepAgreement.Header) -> [UInt8] {
        var writer = ByteWriter()
        writer.u8(header.isBusy ? 1 : 0)
        writer.i64(Int64(header.latestCommandID))
        writer.i64(Int64(header.round))
        return writer.bytes
    }

    private static func decodeHeader(_ bytes: [UInt8]) throws -> StepAgreement.Header {
        var reader = ByteReader(bytes)
        let header = StepAgreement.Header(isBusy: try reader.u8() == 1, latestCommandID: Int(try reader.i64()), round: Int(try reader.i64()))
        guard reader.isAtEnd else { throw MalformedMessage("a step header of \(bytes.count) bytes") }
        return header
    }

    private static func readFrames(from frontEnd: FrontEndConnection, into inbox: RankInbox) {
        let ended = frontEnd.socket.receiveFrames { frame in
            let message = try EngineMessage(decoding: frame)
            switch message {
            case .heartbeat: try frontEnd.send(message, within: .seconds(5))
            case .control(let command) where command.isRecovery: inbox.postRecovery(command)
            default: inbox.post(message)
            }
        }
        inbox.frontEndEnded("\(ended)")
    }
}
