import Compute
import Dispatch
import Foundation
public import Messages
import Synchronization

/// Runs one ``EngineCore`` on a thread of its own, from its creation: takes in requests and
/// aborts between steps, steps while there is work, sleeps when there is none.
///
/// The core, its model and its backend are handed to the loop's thread and belong to it alone;
/// other threads reach it only through ``add(_:sink:)``, ``abort(_:)`` and ``stop()``, which post
/// to the mailbox and wake the thread. ``statistics`` is published by the loop after each step.
public final class EngineLoop: Sendable {
    private enum Message {
        case add(EngineRequest, OutputSink)
        case abort(RequestID)
    }

    private struct Mailbox {
        var inbox: [Message] = []
        var isStopping = false
        var isStopped = false
        var latest: EngineStatistics
        var failure: String?
    }

    private let mailbox: Mutex<Mailbox>
    /// Signalled after every post; a wait that finds nothing new goes back to waiting.
    private let posted = DispatchSemaphore(value: 0)
    private let ended = DispatchSemaphore(value: 0)

    /// The core, moved from the creating thread to the loop's, which alone uses it from then on.
    /// Unchecked Sendable: made from a `sending` core (nothing else holds it), for Thread's `@Sendable` block.
    private struct Handover: @unchecked Sendable {
        let core: EngineCore
        init(_ core: sending EngineCore) { self.core = core }
    }

    public init(core: sending EngineCore) {
        mailbox = Mutex(Mailbox(latest: core.statistics(stepCount: 0, lastStepSeconds: 0)))
        let handover = Handover(core)
        let thread = Thread { [self] in run(handover.core) }
        thread.name = "flexpert-engine"
        thread.stackSize = 16 << 20
        thread.start()
    }

    public func add(_ request: EngineRequest, sink: @escaping OutputSink) {
        post(.add(request, sink)) {
            sink(.finished(request.id, .error($0)))
        }
    }

    public func abort(_ id: RequestID) { post(.abort(id)) { _ in } }

    /// The figures of the last step.
    public var statistics: EngineStatistics { mailbox.withLock { $0.latest } }

    /// Why the loop stopped serving, if a step failed.
    public var failureReason: String? { mailbox.withLock { $0.failure } }

    /// Ends every request with `.abort` and waits for the thread to finish.
    public func stop() {
        mailbox.withLock { $0.isStopping = true }
        posted.signal()
        ended.wait()
        // For the next caller of stop, if any.
        ended.signal()
    }

    private func post(_ message: Message, refused: (String) -> Void) {
        let refusal = mailbox.withLock { mailbox -> String? in
            if let failure = mailbox.failure { return "the engine stopped: \(failure)" }
            if mailbox.isStopping || mailbox.isStopped { return "the engine is shutting down" }
            mailbox.inbox.append(message)
            return nil
        }
        if let refusal {
            refused(refusal)
            return
        }
        posted.signal()
    }

    private func publish(_ core: EngineCore, step: Duration?) {
        var (stepCount, lastStepSeconds) = mailbox.withLock { ($0.latest.stepCount, $0.latest.lastStepSeconds) }
        if let step {
            stepCount += 1
            lastStepSeconds = step.seconds
        }
        let figures = core.statistics(stepCount: stepCount, lastStepSeconds: lastStepSeconds)
        mailbox.withLock { $0.latest = figures }
    }

    private func fail(_ reason: String) { mailbox.withLock { $0.failure = reason } }

    private func run(_ core: EngineCore) {
        do {
            try core.backend.attachCurrentThread()
        } catch {
            fail("the backend cannot run on the engine thread: \(error)")
        }
        var messages: [Message] = []
        while failureReason == nil {
            var stopping = false
            while true {
                let isReady = mailbox.withLock { mailbox in
                    stopping = mailbox.isStopping
                    guard !mailbox.inbox.isEmpty || stopping || core.hasWork else { return false }
                    swap(&messages, &mailbox.inbox)
                    return true
                }
                if isReady { break }
                posted.wait()
            }
            for message in messages {
                switch message {
                case .add(let request, let sink): core.add(request, sink: sink)
                case .abort(let id): core.abort(id)
                }
            }
            let handledMessages = !messages.isEmpty
            messages.removeAll(keepingCapacity: true)
            if stopping { break }

            let started = ContinuousClock.now
            let stepped: Bool
            do {
                stepped = try core.step()
            } catch {
                fail("\(error)")
                core.finishAll(.error("the engine failed: \(error)"))
                break
            }
            if stepped || handledMessages { publish(core, step: stepped ? ContinuousClock.now - started : nil) }
        }
        core.finishAll(.abort)
        // Requests posted after the last take (while a failing step ran) end here: nothing else would.
        let left = mailbox.withLock { mailbox in
            mailbox.isStopped = true
            defer { mailbox.inbox.removeAll() }
            return mailbox.inbox
        }
        let reason = failureReason.map { "the engine failed: \($0)" }
        for case .add(let request, let sink) in left { sink(.finished(request.id, reason.map { .error($0) } ?? .abort)) }
        publish(core, step: nil)
        ended.signal()
    }
}

extension EngineLoop: EngineClient {
    public var rankStatistics: [EngineStatistics] { [statistics] }
}
