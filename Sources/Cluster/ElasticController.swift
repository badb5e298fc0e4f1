import Compute
import Elastic
public import Foundation
public import Messages
import Synchronization
import Transport

/// Processes started for newcomers of a scale-up (the caller's `flexpert engine` children).
public protocol RankProcesses: AnyObject, Sendable {
    /// Why they cannot all run anymore (one exited), or `nil`.
    var problem: String? { get }
    /// Stops them: they exit by themselves when their connections close; those that linger are killed.
    func stop(grace: TimeInterval)
}

/// Conducts reconfigurations for the front end: validates a request, runs a ``ScaleOperation``
/// with the events the ranks report, and carries out its actions on the coordinator, the router
/// and the newcomers' processes. One operation at a time.
///
/// Threads: `scale(to:)` runs the operation on the caller's task; events come from the ranks'
/// reader threads and from watch tasks through an `AsyncStream`; `state` is under a mutex.
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

    private struct State {
        var size: Int
        var generation = 0
        var nextCommandID = 1
        var status: ScaleStatus
        var events: AsyncStream<ScaleOperation.Event>.Continuation?
        /// The generation of the operation that runs, if one does.
        var generationRunning: Int?
        var newcomers: [RemoteRank] = []
    }

    private let coordinator: Coordinator
    private let router: RankRouter
    private let limits: Limits
    private let startRanks: @Sendable (_ generation: Int, _ count: Int) throws -> any RankProcesses
    private let state: Mutex<State>

    public init(coordinator: Coordinator, router: RankRouter, limits: Limits,
                startRanks: @escaping @Sendable (_ generation: Int, _ count: Int) throws -> any RankProcesses) {
        self.coordinator = coordinator
        self.router = router
        self.limits = limits
        self.startRanks = startRanks
        let size = coordinator.configuration.size
        state = Mutex(State(size: size, status: ScaleStatus(phase: .idle, currentSize: size)))
        coordinator.onReport { [weak self] rank, report in self?.received(report, from: rank) }
    }

    public var status: ScaleStatus { state.withLock { $0.status } }

    public func scale(to size: Int) async -> ScaleOutcome {
        guard (limits.minimumSize...limits.maximumSize).contains(size) else {
            return .invalid("new_data_parallel_size must be between \(limits.minimumSize) and \(limits.maximumSize): "
                            + "\(limits.experts) experts need at least \(limits.minimumSize) ranks of \(limits.slotsPerRank) slots")
        }
        let (stream, continuation) = AsyncStream<ScaleOperation.Event>.makeStream()
        let claimed = state.withLock { state -> (from: Int, generation: Int, id: String)? in
            guard state.events == nil else { return nil }
            state.generation += 1
            let id = "scale-\(state.generation)-" + String(UInt32.random(in: 0 ... .max), radix: 16)
            state.events = continuation
            state.generationRunning = state.generation
            state.status = ScaleStatus(operationID: id, phase: .preparing, currentSize: state.size, targetSize: size,
                                       startedAt: Date().timeIntervalSince1970, lastError: nil, timings: [:])
            return (state.size, state.generation, id)
        }
        guard let claimed else {
            return .busy("Another scaling operation (\(status.operationID ?? "?")) is running; try again when it ends.")
        }
        if claimed.from == size {
            finish(size: size, error: nil, timings: ["total_seconds": 0])
            return .scaled(operationID: claimed.id, message: "Already serving on \(size) ranks", timings: [:])
        }
        return await run(stream, from: claimed.from, to: size, generation: claimed.generation, id: claimed.id)
    }

    private func run(_ events: AsyncStream<ScaleOperation.Event>, from: Int, to: Int, generation: Int,
                     id: String) async -> ScaleOutcome {
        let started = ContinuousClock.now
        let migratedBefore = router.migrationCount
        var timings: [String: Double] = [:]
        var (operation, actions) = ScaleOperation.start(from: from, to: to)
        // The one prepare command of the operation: sent to the current ranks and, in the
        // invitation, to the newcomers, whatever order the actions come in.
        let prepare = ControlCommand(id: nextCommandID(), generation: generation, action: .prepare(size: to))
        let processes = ProcessesBox()
        var failure: String?
        var commitStarted: ContinuousClock.Instant?
        let watcher = Task { [self, processes] in
            await watch(from: from, to: to, generation: generation) { processes.current.withLock { $0 } }
        }
        defer { watcher.cancel() }
        func perform(_ actions: [ScaleOperation.Action]) {
            for action in actions {
                switch action {
                case .startRanks(let range):
                    do {
                        let started = try start(range, prepare: prepare, acceptDone: processes.acceptDone)
                        processes.current.withLock { $0 = started }
                    } catch {
                        event(.failed(rank: range.lowerBound, reason: "could not start ranks \(range): \(error)"), generation: generation)
                    }
                case .routeOnlyTo(let count): router.routeOnlyTo(first: count)
                case .migrate(let count): router.migrate(from: count)
                case .sendPrepare(let range): send(prepare, to: range)
                case .sendCommit(let range):
                    timings["prepare_seconds"] = (ContinuousClock.now - started).seconds
                    commitStarted = .now
                    state.withLock { $0.status.phase = .committing }
                    let newcomers = state.withLock { $0.newcomers }
                    if to > from { coordinator.setRanks(coordinator.ranks + newcomers) }
                    send(ControlCommand(id: nextCommandID(), generation: generation, action: .commit), to: range)
                case .sendAbandon(let range):
                    state.withLock { $0.status.phase = .rollingBack }
                    send(ControlCommand(id: nextCommandID(), generation: generation, action: .abandon), to: range)
                case .stopRanks:
                    processes.current.withLock { $0 }?.stop(grace: 5)
                    for newcomer in state.withLock({ $0.newcomers }) { newcomer.close() }
                case .retire(let range):
                    for rank in coordinator.ranks where range.contains(rank.rank) { rank.retire() }
                case .routeTo(let count):
                    if count > router.ranks.count { router.append(state.withLock { $0.newcomers }) }
                    router.truncate(to: count)
                    router.routeOnlyTo(first: count)
                    coordinator.setRanks(Array(coordinator.ranks.prefix(count)))
                case .finish:
                    if let commitStarted { timings["commit_seconds"] = (ContinuousClock.now - commitStarted).seconds }
                case .fail(let reason): failure = reason
                }
            }
        }
        perform(actions)
        let deadline = Task { [self] in
            try? await Task.sleep(for: limits.prepareTimeout)
            event(.timedOut, generation: generation)
        }
        defer { deadline.cancel() }
        for await event in events {
            perform(operation.handle(event))
            if operation.phase == .done || operation.phase == .failed { break }
        }
        // Late events are dropped from here on; no other operation starts until `finish`.
        state.withLock { $0.generationRunning = nil }
        if processes.current.withLock({ $0 }) != nil {
            // The newcomers' acceptor stops with the operation; the next one must not meet it on the listener.
            let done = processes.acceptDone
            await withCheckedContinuation { continuation in
                DispatchQueue.global().async {
                    done.wait()
                    continuation.resume()
                }
            }
        }
        timings["total_seconds"] = (ContinuousClock.now - started).seconds
        timings["migrated_requests"] = Double(router.migrationCount - migratedBefore)
        if let failure {
            finish(size: from, error: failure, timings: timings)
            return .failed(operationID: id, reason: failure)
        }
        finish(size: to, error: nil, timings: timings)
        return .scaled(operationID: id, message: "Scaled from \(from) to \(to) ranks", timings: timings)
    }

    /// Publishes the invitation, starts the newcomers, and accepts their connections on a thread.
    private func start(_ range: Range<Int>, prepare: ControlCommand, acceptDone: DispatchSemaphore) throws -> any RankProcesses {
        let generation = prepare.generation
        let client = try StoreClient(host: coordinator.host, port: coordinator.store.port, token: coordinator.token)
        defer { client.close() }
        let invitation = try JoinInvitation(prepare: prepare, firstNewRank: range.lowerBound)
        guard invitation.size == range.upperBound else { throw MalformedMessage("newcomers \(range) for a prepare to \(invitation.size) ranks") }
        try client.set(JoinInvitation.storeKey(generation), invitation.encoded())
        let processes = try startRanks(generation, range.count)
        let deadline = ContinuousClock.now + limits.prepareTimeout
        let thread = Thread { [self] in
            defer { acceptDone.signal() }
            do {
                let joined = try coordinator.accept(ranks: range, deadline: deadline) {
                    processes.problem ?? (isRunning(generation) ? nil : "the operation ended")
                }
                state.withLock { if $0.generationRunning == generation { $0.newcomers = joined } }
                if !isRunning(generation) { for rank in joined { rank.close() } }
            } catch {
                event(.failed(rank: range.lowerBound, reason: "newcomers did not join: \(error)"), generation: generation)
            }
        }
        thread.name = "flexpert-accept-\(generation)"
        thread.start()
        return processes
    }

    /// Watches what no rank reports: newcomer processes that exit, and the draining of leaving ranks.
    private func watch(from: Int, to: Int, generation: Int, processes: @escaping @Sendable () -> (any RankProcesses)?) async {
        var drained = false
        while !Task.isCancelled {
            if let problem = processes()?.problem, to > from {
                event(.failed(rank: from, reason: problem), generation: generation)
                return
            }
            if to < from && !drained && router.inFlight.dropFirst(to).allSatisfy({ $0 == 0 }) {
                drained = true
                event(.drained, generation: generation)
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
    }

    private func send(_ command: ControlCommand, to range: Range<Int>) {
        var ranks: [Int: RemoteRank] = [:]
        for rank in coordinator.ranks + state.withLock({ $0.newcomers }) { ranks[rank.rank] = rank }
        for (index, rank) in ranks where range.contains(index) { rank.control(command) }
    }

    /// A command id no other command has: ranks carry out commands in id order.
    private func nextCommandID() -> Int {
        state.withLock { state in
            defer { state.nextCommandID += 1 }
            return state.nextCommandID
        }
    }

    private func received(_ report: ReconfigurationReport, from rank: Int) {
        guard let running = state.withLock({ $0.generationRunning }) else { return }
        switch report {
        case .prepared(let generation) where generation == running: event(.prepared(rank: rank), generation: running)
        case .switched(let generation) where generation == running: event(.switched(rank: rank), generation: running)
        case .failed(let generation, let reason) where generation == running: event(.failed(rank: rank, reason: reason), generation: running)
        case .lost(let reason): event(.failed(rank: rank, reason: reason), generation: running)
        default: return
        }
    }

    /// Hands `event` to the running operation if it is still the one of `generation` (a late
    /// event of an ended operation is dropped).
    private func event(_ event: ScaleOperation.Event, generation: Int) {
        _ = state.withLock { $0.generationRunning == generation ? $0.events : nil }?.yield(event)
    }

    private func isRunning(_ generation: Int) -> Bool { state.withLock { $0.generationRunning == generation } }

    private func finish(size: Int, error: String?, timings: [String: Double]) {
        let continuation = state.withLock { state -> AsyncStream<ScaleOperation.Event>.Continuation? in
            state.size = size
            state.status.currentSize = size
            state.status.phase = error == nil ? .idle : .failed
            state.status.lastError = error
            state.status.timings = timings
            state.newcomers = []
            state.generationRunning = nil
            defer { state.events = nil }
            return state.events
        }
        continuation?.finish()
    }
}

/// The newcomers' processes of the running operation, read by its watch task.
private final class ProcessesBox: Sendable {
    let current = Mutex<(any RankProcesses)?>(nil)
    let acceptDone = DispatchSemaphore(value: 0)
}
