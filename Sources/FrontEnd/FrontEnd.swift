public import Messages
import OpenAIAPI
import Synchronization
public import Tokenization

/// The model-facing half of the server: tokenizes, checks requests against the limits, submits
/// them to the engine and turns engine outputs into timed events per choice.
///
/// Immutable after start except for the id counter (atomic), the metrics (their own lock) and
/// the submissions in flight (``admission``'s lock, which also closes admission at shutdown);
/// shared by every HTTP handler task.
public final class FrontEnd: Sendable {
    public let engine: any EngineClient
    public let tokenizer: Tokenizer
    public let chatTemplating: ChatTemplating
    public let chatOptions: ChatOptions
    public let eosTokenIDs: [Int]
    public let limits: ServingLimits
    /// The names clients may use; the first is reported by `/v1/models`.
    public let modelNames: [String]
    public let metrics: ServingMetrics
    private let nextID = Atomic<UInt64>(1)
    private let admission = Mutex(Admission())

    /// Submissions in flight by their first engine id, and whether new ones are refused.
    private struct Admission {
        var isClosed = false
        var live: [RequestID: Live] = [:]
    }

    private struct Live {
        let engineIDs: [RequestID]
        let continuation: AsyncStream<Event>.Continuation
        /// Set when the server stopped the submission at shutdown, before the engine finished it.
        let stop: SetOnceFlag
    }

    public init(engine: any EngineClient, tokenizer: Tokenizer, chatTemplating: ChatTemplating, chatOptions: ChatOptions = ChatOptions(),
                eosTokenIDs: [Int], limits: ServingLimits, modelNames: [String], metrics: ServingMetrics) {
        precondition(!modelNames.isEmpty, "a served model needs a name")
        self.engine = engine
        self.tokenizer = tokenizer
        self.chatTemplating = chatTemplating
        self.chatOptions = chatOptions
        self.eosTokenIDs = eosTokenIDs
        self.limits = limits
        self.modelNames = modelNames
        self.metrics = metrics
    }

    /// One engine output of one choice, stamped when the engine produced it.
    public struct Event: Sendable {
        let choice: Int
        let output: EngineOutput
        let time: ContinuousClock.Instant
    }

    /// A submitted HTTP request: its choices' engine ids and one stream of their events.
    public struct Submission {
        let engineIDs: [RequestID]
        let events: AsyncStream<Event>
        let arrival: ContinuousClock.Instant
        let stopped: SetOnceFlag
    }

    public func checkModel(_ name: String?) throws {
        if let name, !modelNames.contains(name) { throw APIError.modelNotFound(name) }
    }

    public func checkTokens(_ ids: [Int], param: String) throws {
        if let bad = ids.first(where: { $0 < 0 || $0 >= limits.vocabularySize }) {
            throw APIError.invalid("Token id \(bad) is out of vocabulary (0..<\(limits.vocabularySize)).", param: param)
        }
    }

    /// Refuses a request of more choices (prompts × `n`) than ``ServingLimits/maxChoicesPerRequest``,
    /// before any of its prompts is tokenized.
    public func checkChoiceCount(prompts: Int, n: Int) throws {
        let limit = limits.maxChoicesPerRequest
        guard prompts <= limit / n else {
            throw APIError.invalid("A request may have at most \(limit) choices (prompts × n, --max-choices-per-request); "
                                   + "this one has \(prompts) prompts × n = \(n).", param: "n")
        }
    }

    /// Submits `prompts` × `settings.choiceCount` choices; choice `p · n + i` is sample `i` of prompt `p`.
    /// Throws 503 once the server is shutting down. The submission stays registered until
    /// ``finished(_:)``, which ``ChoiceRunner`` calls.
    public func submit(prompts: [[Int]], tokenLimits: [Int], settings: GenerationSettings, promptLogprobs: Int?) throws -> Submission {
        let arrival = ContinuousClock.now
        let choiceCount = prompts.count * settings.choiceCount
        let first = nextID.add(UInt64(choiceCount), ordering: .relaxed).oldValue
        let engineIDs = (0..<UInt64(choiceCount)).map { RequestID(first + $0) }
        let (events, continuation) = AsyncStream<Event>.makeStream()
        let stopped = SetOnceFlag()
        let admitted = admission.withLock { admission in
            guard !admission.isClosed else { return false }
            admission.live[RequestID(first)] = Live(engineIDs: engineIDs, continuation: continuation, stop: stopped)
            return true
        }
        guard admitted else { throw APIError.unavailable("The server is shutting down.") }
        let remaining = Atomic<Int>(choiceCount)
        let stopTokens = settings.stopTokenIDs + (settings.ignoresEOS ? [] : eosTokenIDs)
        metrics.requestArrived(promptTokens: prompts.reduce(0) { $0 + $1.count })
        for choice in 0..<choiceCount {
            let prompt = prompts[choice / settings.choiceCount], sample = choice % settings.choiceCount
            var sampling = settings.sampling
            if let seed = sampling.seed, sample > 0 {
                // Each of the n samples draws its own numbers, repeatably.
                sampling = SamplingParameters(temperature: sampling.temperature, topP: sampling.topP, topK: sampling.topK,
                                              seed: seed &+ UInt64(sample))
            }
            let request = EngineRequest(
                id: engineIDs[choice], promptTokenIDs: prompt, sampling: sampling,
                maxTokens: tokenLimits[choice / settings.choiceCount], minTokens: settings.minTokens,
                stopTokenIDs: stopTokens, logprobCount: settings.logprobCount, promptLogprobCount: promptLogprobs)
            engine.add(request) { output in
                continuation.yield(Event(choice: choice, output: output, time: .now))
                if output.finishReason != nil && remaining.subtract(1, ordering: .relaxed).newValue == 0 {
                    continuation.finish()
                }
            }
        }
        return Submission(engineIDs: engineIDs, events: events, arrival: arrival, stopped: stopped)
    }

    /// The submission's response is complete (or abandoned).
    public func finished(_ submission: Submission) {
        guard let first = submission.engineIDs.first else { return }
        _ = admission.withLock { $0.live.removeValue(forKey: first) }
    }

    public func abort(_ ids: some Sequence<RequestID>) {
        for id in ids { engine.abort(id) }
    }

    // MARK: Shutdown

    /// Refuses every later submission with 503; those in flight go on.
    public func closeAdmission() {
        admission.withLock { $0.isClosed = true }
    }

    /// Whether new submissions are taken (false once shutdown began).
    public var isAdmitting: Bool { admission.withLock { !$0.isClosed } }

    /// Submissions whose responses are not complete yet.
    public var submissionsInFlight: Int { admission.withLock { $0.live.count } }

    /// Ends every submission in flight: its client gets a 503 error (as an event when streamed)
    /// and its requests are aborted in the engine.
    public func stopSubmissionsInFlight() {
        let live = admission.withLock { Array($0.live.values) }
        for submission in live {
            submission.stop.set()
            submission.continuation.finish()
            abort(submission.engineIDs)
        }
    }
}
