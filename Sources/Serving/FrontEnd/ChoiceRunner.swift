import Engine

/// One choice as it is being generated: its text, tokens, log-probabilities, finish and timing.
struct ChoiceState {
    var text: TextStream
    var tokenIDs: [Int] = []
    var logprobs: [TokenLogprobs] = []
    var promptLogprobs: [TokenLogprobs] = []
    var finishReason: FinishReason?
    var firstToken: ContinuousClock.Instant?
    var lastToken: ContinuousClock.Instant?

    var isFinished: Bool { finishReason != nil }
}

/// What changed in one choice after one engine output.
struct ChoiceDelta {
    let choice: Int
    let text: String
    /// New entries of the choice's `tokenIDs` and `logprobs`.
    let tokens: Range<Int>
    let promptLogprobs: Range<Int>
    let finishReason: FinishReason?
}

/// Drives a submission to its end: feeds engine outputs through each choice's text stream,
/// ends choices at stop strings (aborting them in the engine), records metrics, and reports
/// every change to `onDelta`. Aborts whatever is unfinished when it returns or throws, so a
/// client that goes away frees its blocks.
struct ChoiceRunner {
    let frontEnd: FrontEnd
    let submission: FrontEnd.Submission
    private(set) var choices: [ChoiceState]

    init(frontEnd: FrontEnd, submission: FrontEnd.Submission, stopStrings: [String]) {
        self.frontEnd = frontEnd
        self.submission = submission
        choices = submission.engineIDs.map { _ in
            ChoiceState(text: TextStream(tokenizer: frontEnd.tokenizer, stopStrings: stopStrings))
        }
    }

    mutating func run(_ onDelta: (ChoiceDelta, [ChoiceState]) async throws -> Void) async throws {
        var engineDone = [Bool](repeating: false, count: choices.count)
        defer {
            let unfinished = submission.engineIDs.indices.filter { !engineDone[$0] }
            frontEnd.abort(unfinished.map { submission.engineIDs[$0] })
            for index in unfinished where !choices[index].isFinished {
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
            if delta.finishReason == .stop && event.output.finishReason == nil {
                // A stop string ended the choice; the engine need not go on.
                frontEnd.abort([submission.engineIDs[index]])
                engineDone[index] = true
            }
            try await onDelta(delta, choices)
            if choices.allSatisfy(\.isFinished) { return }
        }
        try Task.checkCancellation()
    }

    private mutating func absorb(_ event: FrontEnd.Event) -> ChoiceDelta {
        let index = event.choice, output = event.output
        var state = choices[index]
        let firstNew = state.tokenIDs.count, firstPrompt = state.promptLogprobs.count
        var text = ""
        state.promptLogprobs += output.promptLogprobs
        for token in output.tokenIDs where !state.text.isStopped {
            frontEnd.metrics.tokenArrived(timeToFirst: state.firstToken == nil ? event.time - submission.arrival : nil,
                                          interToken: state.lastToken.map { event.time - $0 })
            if state.firstToken == nil { state.firstToken = event.time }
            state.lastToken = event.time
            state.tokenIDs.append(token)
            text += state.text.append(token)
        }
        state.logprobs += output.logprobs.prefix(state.tokenIDs.count - state.logprobs.count)
        if state.text.isStopped {
            state.finishReason = .stop
        } else if let reason = output.finishReason {
            state.finishReason = reason
        }
        if state.finishReason != nil {
            text += state.text.finish()
            let end = state.lastToken ?? event.time
            let perToken = state.tokenIDs.count > 1
                ? (end - state.firstToken!) / (state.tokenIDs.count - 1) : nil
            frontEnd.metrics.choiceFinished(reason: state.finishReason!.name, latency: end - submission.arrival,
                                            timePerOutputToken: perToken)
        }
        choices[index] = state
        return ChoiceDelta(choice: index, text: text, tokens: firstNew..<state.tokenIDs.count,
                           promptLogprobs: firstPrompt..<state.promptLogprobs.count, finishReason: state.finishReason)
    }
}
