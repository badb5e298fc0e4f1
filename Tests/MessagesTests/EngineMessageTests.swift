import Compute
import Elastic
import Messages
import Testing

struct EngineMessageTests {
    @Test func everyMessageSurvivesTheWire() throws {
        let request = EngineRequest(id: RequestID(.max - 3), promptTokenIDs: [1, 2, 1999], sampling: SamplingParameters(
            temperature: 0.7, topP: 0.9, topK: 40, seed: .max), maxTokens: 12, minTokens: 2, stopTokenIDs: [7, 8],
            logprobCount: 3, promptLogprobCount: nil, keepsLogits: true)
        guard case .add(let decoded) = try EngineMessage(decoding: EngineMessage.add(request).encoded()) else {
            Issue.record("not an add")
            return
        }
        #expect(decoded.id == request.id && decoded.promptTokenIDs == request.promptTokenIDs)
        #expect(decoded.sampling == request.sampling && decoded.maxTokens == 12 && decoded.minTokens == 2)
        #expect(decoded.stopTokenIDs == [7, 8] && decoded.logprobCount == 3 && decoded.promptLogprobCount == nil && decoded.keepsLogits)

        var output = EngineOutput(requestID: 42)
        output.tokenIDs = [5]
        output.logprobs = [TokenLogprobs(tokenID: 5, logprob: -0.25, top: [TopLogprob(tokenID: 5, logprob: -0.25)])]
        output.promptLogprobs = [TokenLogprobs(tokenID: 2, logprob: -.infinity, top: [])]
        output.logits = [1.5, -2]
        output.finishReason = .error("out of memory")
        guard case .outputs(let outputs) = try EngineMessage(decoding: EngineMessage.outputs([output, EngineOutput(requestID: 1)]).encoded()) else {
            Issue.record("not outputs")
            return
        }
        #expect(outputs.count == 2 && outputs[0].tokenIDs == [5] && outputs[0].logprobs == output.logprobs)
        #expect(outputs[0].promptLogprobs == output.promptLogprobs && outputs[0].logits == [1.5, -2])
        #expect(outputs[0].finishReason == .error("out of memory") && outputs[1].finishReason == nil)

        guard case .abort(let id) = try EngineMessage(decoding: EngineMessage.abort(9).encoded()), id == 9 else {
            Issue.record("abort lost")
            return
        }
        var figures = EngineStatistics(blockCount: 10)
        figures.stepCount = 3
        figures.lastStepSeconds = 0.5
        figures.runningCount = 2
        figures.usedBlocks = 4
        figures.preemptionCount = 1
        figures.generatedTokenCount = 77
        figures.exchangedBytes = 1 << 40
        figures.exchangeSeconds = 1.25
        figures.expertBalancedness = 0.75
        figures.prefixQueryTokens = 4096
        figures.prefixHitTokens = 3000
        guard case .statistics(let back) = try EngineMessage(decoding: EngineMessage.statistics(figures).encoded()) else {
            Issue.record("statistics lost")
            return
        }
        #expect(back == figures && back.cacheUsage == 0.4)
    }

    @Test func recoveryCommandsAndReportsSurviveTheWire() throws {
        let recover = ControlCommand(id: 7, generation: 3, action: .recover(rank: 1, size: 3, round: 42))
        guard case .control(let command) = try EngineMessage(decoding: EngineMessage.control(recover).encoded()) else {
            Issue.record("not a control")
            return
        }
        #expect(command == recover && command.isRecovery)
        let broken = ReconfigurationReport.broken(generation: 2, reason: "connection lost")
        guard case .report(let rank, let report) = try EngineMessage(decoding: EngineMessage.report(rank: 2, broken).encoded()) else {
            Issue.record("not a report")
            return
        }
        #expect(rank == 2 && report == broken)
        // A rank outside the size it is given is malformed, not obeyed.
        let outside = ControlCommand(id: 7, generation: 3, action: .recover(rank: 3, size: 3, round: 0))
        #expect(throws: MalformedMessage.self) { try EngineMessage(decoding: EngineMessage.control(outside).encoded()) }
    }

    @Test func brokenMessagesAreRefusedNotTrusted() {
        let valid = EngineMessage.abort(1).encoded()
        #expect(throws: MalformedMessage.self) { try EngineMessage(decoding: []) }
        #expect(throws: MalformedMessage.self) { try EngineMessage(decoding: [99]) }
        #expect(throws: MalformedMessage.self) { try EngineMessage(decoding: Array(valid.dropLast())) }
        #expect(throws: MalformedMessage.self) { try EngineMessage(decoding: valid + [0]) }
        #expect(throws: MalformedMessage.self) { try EngineMessage(decoding: [3, 255, 255, 255, 255]) }
    }

    /// Mutated and random frames, as a broken or hostile peer sends them: every one decodes or is
    /// refused with an error; none crashes the process or makes it allocate what the frame does not hold.
    @Test func fuzzedFramesDecodeOrAreRefused() {
        var output = EngineOutput(requestID: 7)
        output.tokenIDs = [1, 2, 3]
        output.logprobs = [TokenLogprobs(tokenID: 1, logprob: -1, top: [TopLogprob(tokenID: 1, logprob: -1)])]
        output.finishReason = .error("x")
        let request = EngineRequest(id: 3, promptTokenIDs: [1, 2], sampling: SamplingParameters(temperature: 0, topP: 1, topK: nil,
                                    seed: nil), maxTokens: 4, minTokens: 0, stopTokenIDs: [5], logprobCount: 1, promptLogprobCount: 1,
                                    keepsLogits: false)
        let seeds = [EngineMessage.add(request).encoded(), EngineMessage.outputs([output, output]).encoded(),
                     EngineMessage.abort(9).encoded(), EngineMessage.statistics(EngineStatistics(blockCount: 3)).encoded(),
                     EngineMessage.hello(rank: 2, token: "secret").encoded()]
        var random = SplitMix64(seed: 17)
        var decoded = 0, refused = 0
        for round in 0..<20_000 {
            var bytes = seeds[round % seeds.count]
            for _ in 0..<Int.random(in: 1...4, using: &random) {
                let position = Int.random(in: 0..<max(1, bytes.count), using: &random)
                switch Int.random(in: 0..<4, using: &random) {
                case 0 where !bytes.isEmpty: bytes[position] = UInt8.random(in: 0...255, using: &random)
                case 1 where !bytes.isEmpty: bytes.removeSubrange(position...)
                case 2: bytes.insert(contentsOf: [0xFF, 0xFF, 0xFF, 0x7F], at: min(position, bytes.count))
                default: bytes = (0..<Int.random(in: 0..<32, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
                }
            }
            if (try? EngineMessage(decoding: bytes)) != nil { decoded += 1 } else { refused += 1 }
        }
        #expect(decoded + refused == 20_000 && refused > 0)
    }
}
