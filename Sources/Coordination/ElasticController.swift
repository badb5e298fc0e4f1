import Compute
public import Elastic
import Foundation
public import Messages
import Synchronization
import Transport

/// Conducts reconfigurations for the front end: validates a request, runs a ``ScaleOperation``
/// with the events the ranks report, and carries out its actions on the coordinator, the router
/// and the newcomers' processes. One operation at a time.
///
/// Threads: one owner thread (`flexpert-elastic`, for the process's life) conducts every operation
/// and alone touches its state. HTTP tasks hand it scale requests and await the outcome; the ranks'
/// reader threads hand it their reports; both go through `inbox`. While an operation runs, the
/// owner also looks every 20 ms at what no rank reports: the newcomers' connections as their hellos
/// arrive, their processes, the draining of leaving ranks, the deadline. Its blocking work (starting
/// and stopping processes) is on that thread, never on the cooperative pool. `status` is what it
/// last published. With an ``AutoscalePolicy`` it samples the requests in flight every second and
/// starts the scales the policy decides, as a `POST /scale_elastic_ep` would.
///
/// Healing: when a member is lost (its connection ends or its heartbeats stop) or a rank
/// reports its group broken, the owner sends the survivors `recover` (they form a new group,
/// renumbered, and restore the experts only the lost held), the router moves the lost ranks'
/// requests to the survivors (where they wait), and the status says `recovering` until every
/// survivor serves in the new group. A loss during a recovery starts it again without the lost
/// rank; a scale that runs fails first and rolls back. Below the ranks that hold every expert, or
/// after five attempts at one event, the cluster stops serving and says why. A survivor whose own
/// recovery fails is left out of the next attempt (its connection closed, its process exits).
public final class ElasticController: ElasticScaling, Sendable {
    public struct Limits: Sendable {
        public let experts: Int
        public let slotsPerRank: Int
        public let maximumSize: Int
        public let prepareTimeout: Duration

        public init(experts: Int, slotsPerRank: Int, maximumSize: Int, prepareTimeout: Duration) {
            self.experts = experts
            self.slotsPerRank = slotsPerRank
            self.maximumSize = maximumSize
            self.prepareTimeout = prepareTimeout
        }

        public var minimumSize: Int { (experts + slotsPerRank - 1) / slotsPerRank }
    }

    private enum Message: Sendable {
        case scale(size: Int, reply: @Sendable (ScaleOutcome) -> Void)
        case report(rank: RankID, ReconfigurationReport)
    }

    private let coordinator: Coordinator
    private let router: RankRouter
    private let limits: Limits
    private let startRanks: @Sendable (_ generation: Int, _ ranks: Range<RankID>) throws -> any RankProcesses
    private let inbox = Mutex<[Message]>([])
    /// Signalled once per message posted: the owner thread waits on it.
    private let posted = DispatchSemaphore(value: 0)
    private let published: Mutex<ScaleStatus>

    /// - Parameter autoscale: the policy's configuration, when the cluster sizes itself.
    /// - Parameters:
    ///   - replacesFailed: after a recovery, scale back up to the size the cluster had before the loss.
    public init(coordinator: Coordinator, router: RankRouter, limits: Limits, autoscale: AutoscalePolicy.Configuration? = nil,
                replacesFailed: Bool = false,
                startRanks: @escaping @Sendable (_ generation: Int, _ ranks: Range<RankID>) throws -> any RankProcesses) {
        self.coordinator = coordinator
        self.router = router
        self.limits = limits
        self.startRanks = startRanks
        let size = coordinator.configuration.size
        var status = ScaleStatus(phase: .idle, currentSize: size)
        status.autoscale = autoscale.map { AutoscaleStatus(minSize: $0.minSize, maxSize: $0.maxSize) }
        status.recovery = RecoveryStatus()
        published = Mutex(status)
        coordinator.onReport { [weak self] rank, report in self?.post(.report(rank: rank, report)) }
        let thread = Thread { [self] in
            var owner = Owner(controller: self, size: size, policy: autoscale.map(AutoscalePolicy.init),
                              replacesFailed: replacesFailed)
            owner.run()
        }
        thread.name = "flexpert-elastic"
        thread.start()
    }

    public var status: ScaleStatus { published.withLock { $0 } }

    public func scale(to size: Int) async -> ScaleOutcome {
        guard (limits.minimumSize...limits.maximumSize).contains(size) else {
            return .invalid("new_data_parallel_size must be between \(limits.minimumSize) and \(limits.maximumSize): "
                            + "\(limits.experts) experts need at least \(limits.minimumSize) ranks of \(limits.slotsPerRank) slots")
        }
        // At once, rather than after whatever the owner is blocked in (the owner answers a request that races this one).
        let current = status
        if current.isScaling { return .busy("Another scaling operation (\(current.operationID ?? "?")) is running; try again when it ends.") }
        if current.phase == .recovering { return .busy("The cluster is recovering from a lost rank; try again when it serves again.") }
        return await withCheckedContinuation { continuation in
            post(.scale(size: size, reply: { continuation.resume(returning: $0) }))
        }
    }

    private func post(_ message: Message) {
        inbox.withLock { $0.append(message) }
        posted.signal()
    }

    /// The owner thread's state and work: the cluster's size and ids, and the operation that runs.
    private struct Owner {
        let controller: ElasticController
        var size: Int
        var generation = 0
        var nextCommandID = 1
        var running: Running?
        var deferred: [ScaleOperation.Event] = []
        var policy: AutoscalePolicy?
        var autoscale: AutoscaleStatus?
        /// The generation the ranks serve in (a broken report of an older one is stale).
        var servingGeneration = 0
        var recovering: Recovering?
        /// A recovery is due at `at` (a loss: now; a broken group: after a moment for the loss to be seen).
        var recoveryDue: ContinuousClock.Instant?
        /// When the event being recovered from began (kept when a recovery starts again), and the size before it.
        var lossSeen: ContinuousClock.Instant?
        var sizeBeforeLoss: Int?
        /// Whether lost ranks are replaced after a recovery (a scale back up to the size before the loss).
        let replacesFailed: Bool
        var recovery = RecoveryStatus()
        /// Members counted as lost, each once (held, so that no later rank takes one's identity).
        var counted: [RemoteRank] = []
        /// Recoveries begun for the event being recovered from (a loss during one begins another).
        var attempts = 0
        static let maximumAttempts = 5
        /// Why the cluster cannot serve anymore (it could not heal).
        var unservable: String?

        /// A recovery from its `recover` to every survivor serving in `generation`.
        struct Recovering {
            let generation: Int
            let survivors: [RemoteRank]
            var switched: Set<RankID> = []
            let started = ContinuousClock.now
            /// Attempts of this event so far, this one included.
            let attempt: Int
        }
        /// The origin of the policy's clock, and when it samples next.
        let clockOrigin = ContinuousClock.now
        var nextSample = ContinuousClock.now + .seconds(1)

        init(controller: ElasticController, size: Int, policy: AutoscalePolicy?, replacesFailed: Bool) {
            self.controller = controller
            self.size = size
            self.policy = policy
            self.replacesFailed = replacesFailed
            autoscale = policy.map { AutoscaleStatus(minSize: $0.configuration.minSize, maxSize: $0.configuration.maxSize) }
        }

        /// One reconfiguration from its request to its outcome.
        struct Running {
            var operation: ScaleOperation
            let from: Int
            let to: Int
            let id: String
            /// The operation's one prepare command, sent to the current ranks and, in the
            /// invitation, to the newcomers.
            let prepare: ControlCommand
            let reply: @Sendable (ScaleOutcome) -> Void
            let started = ContinuousClock.now
            let migratedBefore: Int
            var status: ScaleStatus
            var timings: [String: Double] = [:]
            var failure: String?
            var commitStarted: ContinuousClock.Instant?
            var timedOut = false
            var drained = false
            var processes: (any RankProcesses)?
            /// Newcomers not all connected yet: their ranks and the connections so far (those that never
            /// come fail the operation at its deadline).
            var arriving: (ranks: Range<RankID>, sockets: [TCPSocket?])?
            var newcomers: [RemoteRank] = []
        }

        var coordinator: Coordinator { controller.coordinator }
        var router: RankRouter { controller.router }

        mutating func run() {
            while true {
                if running != nil || recovering != nil || recoveryDue != nil {
                    _ = controller.posted.wait(timeout: .now() + .milliseconds(20))
                } else if policy != nil {
                    _ = controller.posted.wait(timeout: .now() + max(0, (nextSample - .now).seconds))
                } else {
                    controller.posted.wait()
                }
                for message in controller.inbox.withLock({ inbox in defer { inbox.removeAll() }; return inbox }) {
                    switch message {
                    case .scale(let size, let reply): begin(size: size, reply: reply)
                    case .report(let rank, let report): received(report, from: rank)
                    }
                }
                if running != nil { look() }
                if running == nil, let due = recoveryDue, ContinuousClock.now >= due { beginRecovery() }
                if let current = recovering, ContinuousClock.now - current.started > controller.limits.prepareTimeout {
                    retryRecovery("the survivors did not form generation \(current.generation) in time")
                }
                if policy != nil && ContinuousClock.now >= nextSample {
                    nextSample = .now + .seconds(1)
                    sampleLoad()
                }
            }
        }

        /// Hands the policy the requests in flight; starts the scale it decides.
        mutating func sampleLoad() {
            let sample = AutoscalePolicy.Sample(time: .now - clockOrigin, size: size, requests: router.inFlight.reduce(0, +))
            guard let decision = policy?.observe(sample), running == nil, recovering == nil, recoveryDue == nil, unservable == nil,
                  var autoscale else { return }
            let line = "\(size) → \(decision.size) ranks: \(decision.reason)"
            if decision.size > size { autoscale.scaleUps += 1 } else { autoscale.scaleDowns += 1 }
            autoscale.lastDecision = line
            autoscale.lastDecisionAt = Date().timeIntervalSince1970
            self.autoscale = autoscale
            FileHandle.standardError.write(Data("flexpert: autoscaler: \(line)\n".utf8))
            begin(size: decision.size) { outcome in
                if case .failed(let id, let reason) = outcome {
                    FileHandle.standardError.write(Data("flexpert: autoscaler: \(id) failed: \(reason)\n".utf8))
                }
            }
        }

        mutating func begin(size target: Int, reply: @escaping @Sendable (ScaleOutcome) -> Void) {
            if let running {
                reply(.busy("Another scaling operation (\(running.id)) is running; try again when it ends."))
                return
            }
            if let unservable {
                reply(.failed(operationID: "none", reason: "the cluster cannot serve: \(unservable)"))
                return
            }
            if recovering != nil || recoveryDue != nil {
                reply(.busy("The cluster is recovering from a lost rank; try again when it serves again."))
                return
            }
            generation += 1
            let id = "scale-\(generation)-" + String(UInt32.random(in: 0 ... .max), radix: 16)
            if target == size {
                publish(ScaleStatus(operationID: id, phase: .idle, currentSize: size, targetSize: size,
                                    startedAt: Date().timeIntervalSince1970, timings: ["total_seconds": 0]))
                reply(.scaled(operationID: id, message: "Already serving on \(size) ranks", timings: [:]))
                return
            }
            let (operation, actions) = ScaleOperation.start(from: size, to: target)
            let prepare = ControlCommand(id: takeCommandID(), generation: generation, action: .prepare(size: target))
            let status = ScaleStatus(operationID: id, phase: .preparing, currentSize: size, targetSize: target,
                                     startedAt: Date().timeIntervalSince1970, lastError: nil, timings: [:])
            running = Running(operation: operation, from: size, to: target, id: id, prepare: prepare, reply: reply,
                              migratedBefore: router.migrationCount, status: status)
            policy?.scaleBegan()
            publish(status)
            perform(actions)
            handleDeferred()
        }

        /// Hands `event` to the running operation and carries out what it says; ends the
        /// operation when it is done or failed.
        mutating func handle(_ event: ScaleOperation.Event) {
            guard var current = running else { return }
            let actions = current.operation.handle(event)
            running = current
            perform(actions)
            if let now = running, now.operation.phase == .done || now.operation.phase == .failed { end() }
            handleDeferred()
        }

        /// Events that actions raised, handled after those actions (as the ranks' would be).
        mutating func handleDeferred() {
            while running != nil && !deferred.isEmpty { handle(deferred.removeFirst()) }
            if running == nil { deferred.removeAll() }
        }

        mutating func perform(_ actions: [ScaleOperation.Action]) {
            for action in actions {
                switch action {
                case .startRanks(let range):
                    do {
                        try start(range)
                    } catch {
                        deferred.append(.failed(rank: range.lowerBound, reason: "could not start ranks \(range): \(error)"))
                    }
                case .routeOnlyTo(let count): router.routeOnlyTo(first: count)
                case .migrate(let count): router.migrate(from: count)
                case .sendPrepare(let range): send(running!.prepare, to: range)
                case .sendCommit(let range):
                    running!.timings["prepare_seconds"] = (ContinuousClock.now - running!.started).seconds
                    running!.commitStarted = .now
                    running!.status.phase = .committing
                    publish(running!.status)
                    if running!.to > running!.from { coordinator.setRanks(coordinator.ranks + running!.newcomers) }
                    send(ControlCommand(id: takeCommandID(), generation: generation, action: .commit), to: range)
                case .sendAbandon(let range):
                    running!.status.phase = .rollingBack
                    publish(running!.status)
                    send(ControlCommand(id: takeCommandID(), generation: generation, action: .abandon), to: range)
                case .stopRanks:
                    // Connections first: a newcomer whose connection closes exits by itself within the grace.
                    for socket in running!.arriving?.sockets ?? [] { socket?.close() }
                    running!.arriving = nil
                    for newcomer in running!.newcomers { newcomer.close() }
                    running!.newcomers = []
                    running!.processes?.stop(grace: 5)
                case .retire(let range):
                    for rank in coordinator.ranks where range.contains(rank.rank) { rank.retire() }
                case .routeTo(let count):
                    if count > router.ranks.count { router.append(running!.newcomers) }
                    router.truncate(to: count)
                    router.routeOnlyTo(first: count)
                    coordinator.setRanks(Array(coordinator.ranks.prefix(count)))
                case .finish:
                    if let commitStarted = running!.commitStarted {
                        running!.timings["commit_seconds"] = (ContinuousClock.now - commitStarted).seconds
                    }
                case .fail(let reason): running!.failure = reason
                }
            }
        }

        /// Publishes the invitation and starts the newcomers; their connections are taken as they arrive (`look`).
        mutating func start(_ range: Range<RankID>) throws {
            let prepare = running!.prepare
            let client = try StoreClient(host: coordinator.host, port: coordinator.store.port, token: coordinator.token)
            defer { client.close() }
            let invitation = try JoinInvitation(prepare: prepare, firstNewRank: range.lowerBound)
            try client.set(JoinInvitation.storeKey(prepare.generation), invitation.encoded())
            running!.processes = try controller.startRanks(prepare.generation, range)
            running!.arriving = (range, [TCPSocket?](repeating: nil, count: range.count))
        }

        /// What no rank reports, every 20 ms while an operation runs.
        mutating func look() {
            guard let current = running else { return }
            if let problem = current.processes?.problem, current.to > current.from {
                handle(.failed(rank: RankID(current.from), reason: problem))
                return
            }
            if var arriving = current.arriving {
                coordinator.takeArrivals(arriving.ranks, into: &arriving.sockets)
                let sockets = arriving.sockets.compactMap { $0 }
                if sockets.count == arriving.ranks.count {
                    running!.newcomers = coordinator.remoteRanks(arriving.ranks, sockets)
                    running!.arriving = nil
                } else {
                    running!.arriving = arriving
                }
            }
            if current.to < current.from && !current.drained && router.inFlight.dropFirst(current.to).allSatisfy({ $0 == 0 }) {
                running!.drained = true
                handle(.drained)
                guard running != nil else { return }
            }
            if !current.timedOut && ContinuousClock.now - current.started > controller.limits.prepareTimeout {
                running!.timedOut = true
                handle(.timedOut)
            }
        }

        mutating func received(_ report: ReconfigurationReport, from rank: RankID) {
            receivedWhileHealing(report, from: rank)
            guard running != nil else { return }
            switch report {
            case .prepared(let reported) where reported == generation: handle(.prepared(rank: rank))
            case .switched(let reported) where reported == generation: handle(.switched(rank: rank))
            case .failed(let reported, let reason) where reported == generation: handle(.failed(rank: rank, reason: reason))
            case .broken(let reported, let reason) where reported >= servingGeneration:
                handle(.failed(rank: rank, reason: "rank \(rank)'s group broke: \(reason)"))
            case .lost(let reason):
                // Only a member's loss matters: a rank that left, or a newcomer sent away, closes its connection on purpose.
                guard (coordinator.ranks + running!.newcomers).contains(where: { $0.rank == rank }) else { return }
                handle(.failed(rank: rank, reason: reason))
            default: return
            }
        }

        /// Ends the running operation: its size, status and reply. Late events find no operation.
        mutating func end() {
            guard var current = running else { return }
            running = nil
            // Connections of newcomers that had not all arrived belong to nothing anymore.
            for socket in current.arriving?.sockets ?? [] { socket?.close() }
            current.timings["total_seconds"] = (ContinuousClock.now - current.started).seconds
            current.timings["migrated_requests"] = Double(router.migrationCount - current.migratedBefore)
            size = current.failure == nil ? current.to : current.from
            if current.failure == nil { servingGeneration = generation }
            current.status.currentSize = size
            current.status.phase = current.failure == nil ? .idle : .failed
            current.status.lastError = current.failure
            current.status.timings = current.timings
            let elapsed = ContinuousClock.now - clockOrigin
            policy?.scaleEnded(at: elapsed)
            publish(current.status)
            if let failure = current.failure {
                current.reply(.failed(operationID: current.id, reason: failure))
            } else {
                current.reply(.scaled(operationID: current.id, message: "Scaled from \(current.from) to \(current.to) ranks",
                                      timings: current.timings))
            }
        }

        // MARK: Healing

        /// What the ranks say of losses and recoveries.
        mutating func receivedWhileHealing(_ report: ReconfigurationReport, from rank: RankID) {
            switch report {
            case .lost:
                // By identity: ranks are renumbered by recoveries, and a rank that left on purpose is no loss.
                let lostNow = coordinator.ranks.filter { member in member.failureReason != nil && !counted.contains { $0 === member } }
                guard !lostNow.isEmpty else { return }
                counted += lostNow
                recovery.rankFailures += lostNow.count
                let reasons = lostNow.map { "rank \($0.rank) was lost: \($0.failureReason ?? "?")" }.joined(separator: "; ")
                recovery.lastEvent = reasons
                FileHandle.standardError.write(Data("flexpert: \(reasons); recovering\n".utf8))
                recoverySoon(after: .zero)
            case .broken(let reported, let reason) where reported >= (recovering?.generation ?? servingGeneration):
                FileHandle.standardError.write(Data("flexpert: rank \(rank)'s group \(reported) broke (\(reason))\n".utf8))
                // A moment for the front end to see which member is lost (its connection, its heartbeats).
                recoverySoon(after: .milliseconds(250))
            case .switched(let reported) where reported == recovering?.generation:
                recovering!.switched.insert(rank)
                if recovering!.switched.count == recovering!.survivors.count { finishRecovery() }
            case .failed(let reported, let reason) where reported == recovering?.generation:
                // That survivor cannot recover (its device, its memory): the next attempt goes on without it.
                if let current = recovering, current.survivors.indices.contains(rank.index) {
                    let survivor = current.survivors[rank.index]
                    counted.append(survivor)
                    recovery.rankFailures += 1
                    survivor.dismiss("rank \(rank) could not recover: \(reason)")
                }
                retryRecovery(reason)
            default:
                return
            }
        }

        mutating func recoverySoon(after delay: Duration) {
            guard unservable == nil else { return }
            if lossSeen == nil {
                lossSeen = .now
                // A scale that runs fails; the size to come back to is the one the group served at,
                // or the one a shrink was going to.
                sizeBeforeLoss = running.map { min($0.from, $0.to) } ?? size
            }
            let due = ContinuousClock.now + delay
            recoveryDue = min(recoveryDue ?? due, due)
            if recovering == nil && running == nil {
                var status = controller.status
                status.phase = .recovering
                status.lastError = recovery.lastEvent
                publish(status)
            }
        }

        /// Sends the survivors their recovery and moves the lost ranks' requests to them.
        mutating func beginRecovery() {
            recoveryDue = nil
            attempts += 1
            guard attempts <= Self.maximumAttempts else {
                stopServing("\(Self.maximumAttempts) recoveries did not heal the cluster" + (recovery.lastEvent.map { " (\($0))" } ?? ""))
                return
            }
            let survivors = coordinator.ranks.filter(\.isAlive)
            // Members that are not survivors (lost, or leaving from a scale that failed) go: their processes exit.
            for member in coordinator.ranks where !member.isAlive { member.close() }
            let limits = controller.limits
            guard survivors.count >= limits.minimumSize else {
                stopServing("\(survivors.count) ranks are left and \(limits.experts) experts need at least \(limits.minimumSize) "
                            + "of \(limits.slotsPerRank) slots" + (recovery.lastEvent.map { " (\($0))" } ?? ""))
                return
            }
            generation += 1
            let id = takeCommandID(), round = coordinator.latestWake + 1
            for (index, survivor) in survivors.enumerated() {
                survivor.renumber(to: RankID(index))
                survivor.control(ControlCommand(id: id, generation: generation,
                                                action: .recover(rank: RankID(index), size: survivors.count, round: round)))
            }
            coordinator.setRanks(survivors)
            router.recover(keeping: survivors)
            recovering = Recovering(generation: generation, survivors: survivors, attempt: attempts)
            size = survivors.count
            var status = ScaleStatus(operationID: "recover-\(generation)", phase: .recovering, currentSize: size,
                                     targetSize: size, startedAt: Date().timeIntervalSince1970, lastError: recovery.lastEvent)
            status.timings = [:]
            publish(status)
        }

        /// Every survivor serves in the new group: the cluster is whole again at its new size.
        mutating func finishRecovery() {
            guard let current = recovering else { return }
            recovering = nil
            servingGeneration = current.generation
            let seconds = (ContinuousClock.now - (lossSeen ?? current.started)).seconds
            lossSeen = nil
            attempts = 0
            recovery.recoveries += 1
            recovery.recoverySeconds += seconds
            recovery.lastRecoverySeconds = seconds
            let line = String(format: "recovered on %d ranks in %.3f s", size, seconds)
            recovery.lastEvent = (recovery.lastEvent.map { $0 + "; " } ?? "") + line
            FileHandle.standardError.write(Data("flexpert: \(line)\n".utf8))
            publish(ScaleStatus(operationID: "recover-\(current.generation)", phase: .idle, currentSize: size, targetSize: size,
                                startedAt: Date().timeIntervalSince1970 - seconds, lastError: recovery.lastEvent,
                                timings: ["recovery_seconds": seconds, "attempts": Double(current.attempt)]))
            let elapsed = ContinuousClock.now - clockOrigin
            policy?.scaleEnded(at: elapsed)
            if replacesFailed, let wanted = sizeBeforeLoss, wanted > size {
                FileHandle.standardError.write(Data("flexpert: replacing the lost ranks: \(size) → \(wanted) ranks\n".utf8))
                begin(size: wanted) { outcome in
                    if case .failed(let id, let reason) = outcome {
                        FileHandle.standardError.write(Data("flexpert: replacing the lost ranks (\(id)) failed: \(reason)\n".utf8))
                    }
                }
            }
            sizeBeforeLoss = nil
        }

        /// The recovery failed (`reason`): again from the ranks still alive.
        mutating func retryRecovery(_ reason: String) {
            guard let current = recovering else { return }
            recovering = nil
            FileHandle.standardError.write(Data("flexpert: recovery into generation \(current.generation) failed: \(reason)\n".utf8))
            beginRecovery()
        }

        /// The cluster cannot heal: it says so (status, health, every request) instead of hanging.
        mutating func stopServing(_ reason: String) {
            unservable = reason
            recovering = nil
            recoveryDue = nil
            router.stopServing("the cluster cannot serve: \(reason)")
            FileHandle.standardError.write(Data("flexpert: the cluster cannot serve: \(reason)\n".utf8))
            var status = controller.status
            status.phase = .failed
            status.lastError = "the cluster cannot serve: \(reason)"
            publish(status)
        }

        func send(_ command: ControlCommand, to range: Range<RankID>) {
            var ranks: [RankID: RemoteRank] = [:]
            for rank in coordinator.ranks + (running?.newcomers ?? []) { ranks[rank.rank] = rank }
            for (index, rank) in ranks where range.contains(index) { rank.control(command) }
        }

        /// A command id no other command has: ranks carry out commands in id order.
        mutating func takeCommandID() -> Int {
            defer { nextCommandID += 1 }
            return nextCommandID
        }

        func publish(_ status: ScaleStatus) {
            var status = status
            status.autoscale = autoscale
            status.recovery = recovery
            controller.published.withLock { $0 = status }
        }
    }
}
