import Compute
import Foundation

/// Runs one ``EngineCore`` on a thread of its own: takes in requests and aborts between steps,
/// steps while there is work, sleeps when there is none.
///
/// The core, its model and its backend belong to the loop's thread alone; other threads reach it
/// only through ``add(_:sink:)``, ``abort(_:)`` and ``stop()``, which queue a message under the
/// condition's lock and wake the thread. ``statistics`` is written by the loop after each step.
public final class EngineLoop: @unchecked Sendable {
    private enum Message {
        case add(EngineRequest, OutputSink)
        case abort(UInt64)
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
            var output = EngineOutput(requestID: request.id)
            output.finishReason = .error($0)
            sink(output)
        }
    }

    public func abort(_ id: UInt64) { post(.abort(id)) { _ in } }

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

/// A rank's engine figures, as of its last step.
public struct EngineStatistics: Sendable, Equatable {
    public var blockCount: Int
    public var stepCount = 0
    public var lastStepSeconds = 0.0
    public var runningCount = 0
    public var waitingCount = 0
    public var usedBlocks = 0
    public var preemptionCount = 0
    /// Tokens sampled and requests ended since the engine started.
    public var generatedTokenCount = 0
    public var finishedRequestCount = 0
    /// Expert-parallel traffic this rank sent, and the time its exchanges took.
    public var exchangedBytes = 0
    public var exchangeSeconds = 0.0
    /// Mean over max of rank loads in the expert-load window (1 without expert parallelism).
    public var expertBalancedness = 1.0
    /// EPLB rearrangements planned, expert copies this rank received, and seconds spent moving them.
    public var expertRearrangements = 0
    public var expertsReceived = 0
    public var expertMoveSeconds = 0.0

    public init(blockCount: Int) { self.blockCount = blockCount }

    public var cacheUsage: Double { blockCount == 0 ? 0 : Double(usedBlocks) / Double(blockCount) }
}
