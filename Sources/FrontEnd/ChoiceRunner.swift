public import Messages
import OpenAIAPI

/// One choice as it is being generated: its text, tokens, log-probabilities, finish and timing.
public struct ChoiceState {
    public var text: TextStream
    public var tokenIDs: [Int] = []
    public var logprobs: [TokenLogprobs] = []
    public var promptLogprobs: [TokenLogprobs] = []
    public var finishReason: FinishReason?
    public var firstToken: ContinuousClock.Instant?
    public var lastToken: ContinuousClock.Instant?

    public var isFinished: Bool { finishReason != nil }
}

/// What changed in one choice after one engine output.
public struct ChoiceDelta {
    public let choice: Int
    public let text: String
    /// New entries of the choice's `tokenIDs` and `logprobs`.
    public let tokens: Range<Int>
    public let promptLogprobs: Range<Int>
    public let finishReason: FinishReason?
}

/// Drives a submission to its end: feeds engine outputs through each choice's text stream,
/// ends choices at stop strings (aborting them in the engine), records metrics, and reports
/// every change to `onDelta`. Aborts whatever is unfinished when it returns or throws, so a
/// client that goes away frees its blocks.
public struct ChoiceRunner {
    public let frontEnd: FrontEnd
    public let submission: FrontEnd.Submission
    public private(set) var choices: [ChoiceState]

    public init(frontEnd: FrontEnd, submission: FrontEnd.Submission, stopStrings: [String], keepsSpecialTokens: Bool = false) {
        self.frontEnd = frontEnd
        self.submission = submission
        choices = submission.engineIDs.map { _ in
            ChoiceState(text: TextStream(tokenizer: frontEnd.tokenizer, stopStrings: stopStrings, keepsSpecialTokens: keepsSpecialTokens,
                                         hiddenTokenIDs: keepsSpecialTokens ? frontEnd.eosTokenIDs : []))
        }
    }

    /// - Throws: `CancellationError` when the task is cancelled (the client left), 503 when the
    ///   server stopped the submission at shutdown, and whatever `onDelta` throws.
    public mutating func run(_ onDelta: (ChoiceDelta, [ChoiceState]) async throws -> Void) async throws {
        // Per event: constant work besides the event's own tokens, whatever the number of choices.
        var engineDone = [Bool](repeating: false, count: choices.count)
        var unfinished = choices.count
        defer {
            frontEnd.finished(submission)
            let open = submission.engineIDs.indices.filter { !engineDone[$0] }
            frontEnd.abort(open.map { submission.engineIDs[$0] })
            for index in open where !choices[index].isFinished {
                choices[index].finishReason = .abort
                let end = ContinuousClock.now
                frontEnd.metrics.choiceFinished(reason: "abort", latency: end - submission.arrival, timePerOutputToken: nil)
            }
        }
        for await event in submission.events {
            let index = event.choice
            if event.output.finishReason != nil { engineDone[index] = true }
            guard !choices[index].isFinished else { continue }
            let delta = absorb(event)
            if delta.finishReason != nil { unfinished -= 1 }
            if delta.finishReason == .stop && event.output.finishReason == nil {
                // A stop string ended the choice; the engine need not go on.
                frontEnd.abort([submission.engineIDs[index]])
                engineDone[index] = true
            }
            try await onDelta(delta, choices)
            if unfinished == 0 { return }
        }
        if submission.stopped.isSet {
            throw APIError.unavailable("The server shut down before this request finished (--shutdown-timeout).")
        }
        try Task.checkCancellation()
    }

    private mutating func absorb(_ event: FrontEnd.Event) -> ChoiceDelta {
        let index = event.choice, output = event.output
        // In place: a copy of the choice would copy its token arrays at every event.
        let firstNew = choices[index].tokenIDs.count, firstPrompt = choices[index].promptLogprobs.count
        var text = ""
        choices[index].promptLogprobs += output.promptLogprobs
        for token in output.tokenIDs where !choices[index].text.isStopped {
            let firstToken = choices[index].firstToken, lastToken = choices[index].lastToken
            frontEnd.metrics.tokenArrived(timeToFirst: firstToken == nil ? event.time - submission.arrival : nil,
                                          interToken: lastToken.map { event.time - $0 })
            if firstToken == nil { choices[index].firstToken = event.time }
            choices[index].lastToken = event.time
            choices[index].tokenIDs.append(token)
            text += choices[index].text.append(token)
        }
        let tokenCount = choices[index].tokenIDs.count
        choices[index].logprobs += output.logprobs.prefix(tokenCount - choices[index].logprobs.count)
        if choices[index].text.isStopped {
            choices[index].finishReason = .stop
        } else if let reason = output.finishReason {
            choices[index].finishReason = reason
        }
        if let reason = choices[index].finishReason {
            text += choices[index].text.finish()
            let state = choices[index]
            let end = state.lastToken ?? event.time
            let perToken = state.tokenIDs.count > 1 ? (end - state.firstToken!) / (state.tokenIDs.count - 1) : nil
            frontEnd.metrics.choiceFinished(reason: reason.name, latency: end - submission.arrival, timePerOutputToken: perToken)
        }
        return ChoiceDelta(choice: index, text: text, tokens: firstNew..<choices[index].tokenIDs.count,
                           promptLogprobs: firstPrompt..<choices[index].promptLogprobs.count,
                           finishReason: choices[index].finishReason)
    }
}
