import Compute
import Foundation
public import Messages

/// Runs one ``EngineCore`` on a thread of its own: takes in requests and aborts between steps,
/// steps while there is work, sleeps when there is none.
///
/// The core, its model and its backend belong to the loop's thread alone; other threads reach it
/// only through ``add(_:sink:)``, ``abort(_:)`` and ``stop()``, which queue a message under the
/// condition's lock and wake the thread. ``statistics`` is written by the loop after each step.
/// Unchecked Sendable: the inbox is guarded by `condition`; the core belongs to the loop's thread.
public final class EngineLoop: @unchecked Sendable {
    private enum Message {
        case add(EngineRequest, OutputSink)
        case abort(RequestID)
    }

    private let condition = NSCondition()
    // Guarded by `condition`.
    private var inbox: [Message] = []
    private var isStopping = false
    private var isStopped = false
    private var latest: EngineStatistics
    private var failure: String?

    private let core: EngineCore
    private var thread: Thread?

    public init(core: EngineCore) {
        self.core = core
        latest = core.statistics(stepCount: 0, lastStepSeconds: 0)
    }

    /// Starts the loop's thread. Called once.
    public func start() {
        precondition(thread == nil, "an engine loop starts once")
        let thread = Thread { [self] in run() }
        thread.name = "flexpert-engine"
        thread.stackSize = 16 << 20
        self.thread = thread
        thread.start()
    }

    public func add(_ request: EngineRequest, sink: @escaping OutputSink) {
        post(.add(request, sink)) {
            sink(.finished(request.id, .error($0)))
        }
    }

    public func abort(_ id: RequestID) { post(.abort(id)) { _ in } }

    /// The figures of the last step.
    public var statistics: EngineStatistics {
        condition.lock()
        defer { condition.unlock() }
        return latest
    }

    /// Why the loop stopped serving, if a step failed.
    public var failureReason: String? {
        condition.lock()
        defer { condition.unlock() }
        return failure
    }

    /// Ends every request with `.abort` and waits for the thread to finish.
    public func stop() {
        condition.lock()
        isStopping = true
        condition.broadcast()
        while thread != nil && !isStopped { condition.wait() }
        condition.unlock()
    }

    private func publish(step: Duration?) {
        condition.lock()
        var stepCount = latest.stepCount, lastStepSeconds = latest.lastStepSeconds
        condition.unlock()
        if let step {
            stepCount += 1
            lastStepSeconds = step.seconds
        }
        let figures = core.statistics(stepCount: stepCount, lastStepSeconds: lastStepSeconds)
        condition.lock()
        latest = figures
        condition.unlock()
    }

    private func post(_ message: Message, refused: (String) -> Void) {
        condition.lock()
        if let failure {
            condition.unlock()
            refused("the engine stopped: \(failure)")
            return
        }
        if isStopping || isStopped {
            condition.unlock()
            refused("the engine is shutting down")
            return
        }
        inbox.append(message)
        condition.signal()
        condition.unlock()
    }

    private func run() {
        do {
            try core.backend.attachCurrentThread()
        } catch {
            condition.lock()
            failure = "the backend cannot run on the engine thread: \(error)"
            condition.unlock()
        }
        var messages: [Message] = []
        while failureReason == nil {
            condition.lock()
            while inbox.isEmpty && !isStopping && !core.hasWork { condition.wait() }
            swap(&messages, &inbox)
            let stopping = isStopping
            condition.unlock()

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
                condition.lock()
                failure = "\(error)"
                condition.unlock()
                core.finishAll(.error("the engine failed: \(error)"))
                break
            }
            if stepped || handledMessages { publish(step: stepped ? ContinuousClock.now - started : nil) }
        }
        core.finishAll(.abort)
        publish(step: nil)
        condition.lock()
        isStopped = true
        condition.broadcast()
        condition.unlock()
    }
}

extension EngineLoop: EngineClient {
    public var rankStatistics: [EngineStatistics] { [statistics] }
}
