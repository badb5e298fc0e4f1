import Compute
public import Distributed
public import Engine
import Foundation
public import Parallelism
import Scheduling

/// The step loop of an engine rank in its own process: takes requests from the front end's
/// connection, steps its ``EngineCore``, and sends each step's outputs back in one message.
///
/// With several ranks (a group), ranks step together: before each step they all-reduce whether
/// any has work; if one has, all step (those without work on a padding token, for the MoE
/// exchanges); if none has, all go idle at the same round and stay idle until the front end sends
/// `wake(round + 1)` — which a rank that gets work while idle asks for with `needWake`.
///
/// Threads: the loop runs on the caller's thread and owns the core, the group and all writes to
/// the connection; a reader thread only decodes frames into the inbox (under `condition`).
public final class RankLoop: @unchecked Sendable {
    private let core: EngineCore
    private let group: StatelessGroup?
    private let connection: TCPSocket
    private let collectiveTimeout: Duration
    private let eplb: EPLB?
    private let condition = NSCondition()
    // Guarded by `condition`.
    private var inbox: [EngineMessage] = []
    private var frontEndGone: String?
    // The loop's thread only (sinks run inside the core's calls on that thread).
    private var outbox: [EngineOutput] = []
    private var stepCount = 0
    private var lastStepSeconds = 0.0

    public init(core: EngineCore, group: StatelessGroup?, connection: TCPSocket, collectiveTimeout: Duration,
                eplb: EPLB? = nil) {
        self.eplb = eplb
        self.core = core
        self.group = group
        self.connection = connection
        self.collectiveTimeout = collectiveTimeout
    }

    /// Serves until the front end goes away (returns) or the rank cannot go on (throws, after
    /// ending its requests with the reason).
    public func run() throws {
        try core.backend.attachCurrentThread()
        let reader = Thread { [self] in readFrames() }
        reader.name = "flexpert-rank-reader"
        reader.start()
        do {
            try loop()
        } catch {
            core.finishAll(.error("rank failed: \(error)"))
            try? flush(statistics: true)
            connection.close()
            throw error
        }
        core.finishAll(.abort)
        try? flush(statistics: true)
        connection.close()
    }

    private func loop() throws {
        var round = 0, wokenFor = 0, askedFor = 0
        var idle = group != nil
        var messages: [EngineMessage] = []
        while true {
            condition.lock()
            while inbox.isEmpty && frontEndGone == nil
                    && (group == nil ? !core.hasWork : (idle && wokenFor <= round && (!core.hasWork || askedFor > round))) {
                condition.wait()
            }
            swap(&messages, &inbox)
            let gone = frontEndGone
            condition.unlock()
            for message in messages {
                switch message {
                case .add(let request): core.add(request) { [self] in outbox.append($0) }
                case .abort(let id): core.abort(id)
                case .wake(let target): wokenFor = max(wokenFor, target)
                case .hello, .outputs, .statistics, .needWake: continue
                }
            }
            messages.removeAll(keepingCapacity: true)
            if gone != nil { return }

            guard let group else {
                if core.hasWork { try step(padding: false) }
                try flush(statistics: false)
                continue
            }
            if idle {
                if wokenFor > round {
                    idle = false
                } else {
                    if core.hasWork && askedFor <= round {
                        askedFor = round + 1
                        try send(.needWake(round: round + 1))
                    }
                    try flush(statistics: false)
                    continue
                }
            }
            let busy = try group.allReduce([Int64(core.hasWork ? 1 : 0)], .max, timeout: collectiveTimeout)[0]
            if busy == 0 {
                round += 1
                idle = true
                try flush(statistics: true)
                continue
            }
            let padding = !core.hasWork
            try step(padding: true)
            try eplb?.afterStep(padding: padding, group: group, timeout: collectiveTimeout)
            try flush(statistics: false)
        }
    }

    private func step(padding: Bool) throws {
        let started = ContinuousClock.now
        _ = try core.step(padsWhenIdle: padding)
        let elapsed = ContinuousClock.now - started
        stepCount += 1
        lastStepSeconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
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
        try connection.sendFrame(message.encoded(), deadline: .now + .seconds(30))
    }

    private func readFrames() {
        var reason = "the front end closed the connection"
        while true {
            do {
                let message = try EngineMessage(decoding: try connection.receiveFrame(deadline: .now + .seconds(86_400 * 365)))
                condition.lock()
                inbox.append(message)
                condition.signal()
                condition.unlock()
            } catch {
                reason = "\(error)"
                break
            }
        }
        condition.lock()
        frontEndGone = reason
        condition.signal()
        condition.unlock()
    }
}
