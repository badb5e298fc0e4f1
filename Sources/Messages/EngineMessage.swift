public import Elastic
/// What the front end and an engine rank say to each other over their connection, one message
/// per frame: requests and aborts one way, outputs and figures the other.
///
/// Ranks that step together (expert parallelism) go idle together, counting idle rounds; a rank
/// that gets work while idle asks for `needWake(round + 1)` and the front end sends every rank
/// `wake(round + 1)`, so all of them start stepping again (vLLM's "start wave").
public enum EngineMessage: Sendable {
    /// First frame of a rank's connection: its rank and the join token.
    case hello(rank: RankID, token: String)
    case add(EngineRequest)
    case abort(RequestID)
    case outputs([EngineOutput])
    case statistics(EngineStatistics)
    case needWake(round: Int)
    case wake(round: Int)
    /// Front end → rank: a step of a reconfiguration (see ``ControlCommand``).
    case control(ControlCommand)
    /// Rank → front end: how its part of a reconfiguration went.
    case report(rank: RankID, ReconfigurationReport)
    /// The front end sends one every so often; the rank's reader thread answers at once with the
    /// same number, so that a rank whose process is stopped or cut off is seen though its
    /// connection stays open (a stopped process's kernel still acknowledges TCP).
    case heartbeat(sequence: Int)

    private enum Kind: UInt8 {
        case add = 1, abort, outputs, statistics, hello, needWake, wake, control, report, heartbeat
    }

    public func encoded() -> [UInt8] {
        var writer = ByteWriter()
        switch self {
        case .hello(let rank, let token):
            writer.u8(Kind.hello.rawValue)
            writer.i64(Int64(rank.index))
            writer.string(token)
        case .needWake(let round):
            writer.u8(Kind.needWake.rawValue)
            writer.i64(Int64(round))
        case .heartbeat(let sequence):
            writer.u8(Kind.heartbeat.rawValue)
            writer.i64(Int64(sequence))
        case .wake(let round):
            writer.u8(Kind.wake.rawValue)
            writer.i64(Int64(round))
        case .control(let command):
            writer.u8(Kind.control.rawValue)
            writer.command(command)
        case .report(let rank, let report):
            writer.u8(Kind.report.rawValue)
            writer.i64(Int64(rank.index))
            writer.report(report)
        case .add(let request):
            writer.u8(Kind.add.rawValue)
            writer.request(request)
        case .abort(let id):
            writer.u8(Kind.abort.rawValue)
            writer.i64(Int64(bitPattern: id.rawValue))
        case .outputs(let outputs):
            writer.u8(Kind.outputs.rawValue)
            writer.u32(UInt32(outputs.count))
            for output in outputs { writer.output(output) }
        case .statistics(let figures):
            writer.u8(Kind.statistics.rawValue)
            for value in [figures.blockCount, figures.stepCount, figures.runningCount, figures.waitingCount,
                          figures.usedBlocks, figures.preemptionCount, figures.generatedTokenCount,
                          figures.finishedRequestCount, figures.exchangedBytes, figures.expertRearrangements,
                          figures.expertsReceived, figures.prefixQueryTokens, figures.prefixHitTokens] { writer.i64(Int64(value)) }
            writer.i64(Int64(bitPattern: figures.lastStepSeconds.bitPattern))
            writer.i64(Int64(bitPattern: figures.exchangeSeconds.bitPattern))
            writer.i64(Int64(bitPattern: figures.expertBalancedness.bitPattern))
            writer.i64(Int64(bitPattern: figures.expertMoveSeconds.bitPattern))
        }
        return writer.bytes
    }

    public init(decoding bytes: [UInt8]) throws {
        var reader = ByteReader(bytes)
        switch Kind(rawValue: try reader.u8()) {
        case .hello: self = .hello(rank: RankID(Int(try reader.i64())), token: try reader.string())
        case .needWake: self = .needWake(round: Int(try reader.i64()))
        case .wake: self = .wake(round: Int(try reader.i64()))
        case .heartbeat: self = .heartbeat(sequence: Int(try reader.i64()))
        case .control: self = .control(try reader.command())
        case .report: self = .report(rank: RankID(Int(try reader.i64())), try reader.report())
        case .add: self = .add(try reader.request())
        case .abort: self = .abort(RequestID(UInt64(bitPattern: try reader.i64())))
        case .outputs:
            let count = try reader.count()
            self = .outputs(try (0..<count).map { _ in try reader.output() })
        case .statistics:
            let values = try (0..<13).map { _ in Int(try reader.i64()) }
            var figures = EngineStatistics(blockCount: values[0])
            figures.stepCount = values[1]
            figures.runningCount = values[2]
            figures.waitingCount = values[3]
            figures.usedBlocks = values[4]
            figures.preemptionCount = values[5]
            figures.generatedTokenCount = values[6]
            figures.finishedRequestCount = values[7]
            figures.exchangedBytes = values[8]
            figures.expertRearrangements = values[9]
            figures.expertsReceived = values[10]
            figures.prefixQueryTokens = values[11]
            figures.prefixHitTokens = values[12]
            figures.lastStepSeconds = Double(bitPattern: UInt64(bitPattern: try reader.i64()))
            figures.exchangeSeconds = Double(bitPattern: UInt64(bitPattern: try reader.i64()))
            figures.expertBalancedness = Double(bitPattern: UInt64(bitPattern: try reader.i64()))
            figures.expertMoveSeconds = Double(bitPattern: UInt64(bitPattern: try reader.i64()))
            self = .statistics(figures)
        case nil: throw MalformedMessage("unknown engine message")
        }
        guard reader.isAtEnd else { throw MalformedMessage("trailing bytes after an engine message") }
    }
}

extension ByteWriter {
    mutating func integers(_ values: [Int]) {
        u32(UInt32(values.count))
        for value in values { i64(Int64(value)) }
    }

    mutating func optional(_ value: Int?) {
        u8(value == nil ? 0 : 1)
        i64(Int64(value ?? 0))
    }

    mutating func float(_ value: Float) { u32(value.bitPattern) }

    mutating func request(_ request: EngineRequest) {
        i64(Int64(bitPattern: request.id.rawValue))
        integers(request.promptTokenIDs)
        float(request.sampling.temperature)
        float(request.sampling.topP)
        optional(request.sampling.topK)
        optional(request.sampling.seed.map { Int(bitPattern: UInt($0)) })
        i64(Int64(request.maxTokens))
        i64(Int64(request.minTokens))
        integers(request.stopTokenIDs)
        optional(request.logprobCount)
        optional(request.promptLogprobCount)
        u8(request.keepsLogits ? 1 : 0)
    }

    mutating func logprobs(_ entries: [TokenLogprobs]) {
        u32(UInt32(entries.count))
        for entry in entries {
            i64(Int64(entry.tokenID))
            float(entry.logprob)
            u32(UInt32(entry.top.count))
            for top in entry.top {
                i64(Int64(top.tokenID))
                float(top.logprob)
            }
        }
    }

    mutating func output(_ output: EngineOutput) {
        i64(Int64(bitPattern: output.requestID.rawValue))
        integers(output.tokenIDs)
        logprobs(output.logprobs)
        logprobs(output.promptLogprobs)
        u32(UInt32(output.logits.count))
        for value in output.logits { float(value) }
        switch output.finishReason {
        case nil: u8(0)
        case .stop: u8(1)
        case .length: u8(2)
        case .abort: u8(3)
        case .error(let message):
            u8(4)
            string(message)
        }
    }
}

extension ByteReader {
    /// A count that the rest of the message could possibly hold (each element takes at least a
    /// byte), so a corrupt count cannot make the reader reserve gigabytes.
    mutating func count() throws -> Int {
        let value = Int(try u32())
        guard value <= remainingCount else { throw MalformedMessage("a list of \(value) elements") }
        return value
    }

    mutating func integers() throws -> [Int] { try (0..<count()).map { _ in Int(try i64()) } }

    mutating func optional() throws -> Int? {
        let present = try u8() != 0, value = Int(try i64())
        return present ? value : nil
    }

    mutating func float() throws -> Float { Float(bitPattern: try u32()) }

    mutating func request() throws -> EngineRequest {
        let id = RequestID(UInt64(bitPattern: try i64())), prompt = try integers()
        let sampling = SamplingParameters(temperature: try float(), topP: try float(), topK: try optional(),
                                          seed: try optional().map { UInt64(UInt(bitPattern: $0)) })
        let maxTokens = Int(try i64()), minTokens = Int(try i64()), stops = try integers()
        let logprobs = try optional(), promptLogprobs = try optional(), keepsLogits = try u8() != 0
        return EngineRequest(id: id, promptTokenIDs: prompt, sampling: sampling, maxTokens: maxTokens, minTokens: minTokens,
                             stopTokenIDs: stops, logprobCount: logprobs, promptLogprobCount: promptLogprobs,
                             keepsLogits: keepsLogits)
    }

    mutating func logprobs() throws -> [TokenLogprobs] {
        try (0..<count()).map { _ in
            let id = Int(try i64()), value = try float()
            let top = try (0..<count()).map { _ in TopLogprob(tokenID: Int(try i64()), logprob: try float()) }
            return TokenLogprobs(tokenID: id, logprob: value, top: top)
        }
    }

    mutating func output() throws -> EngineOutput {
        var output = EngineOutput(requestID: RequestID(UInt64(bitPattern: try i64())))
        output.tokenIDs = try integers()
        output.logprobs = try logprobs()
        output.promptLogprobs = try logprobs()
        output.logits = try (0..<count()).map { _ in try float() }
        switch try u8() {
        case 0: output.finishReason = nil
        case 1: output.finishReason = .stop
        case 2: output.finishReason = .length
        case 3: output.finishReason = .abort
        case 4: output.finishReason = .error(try string())
        default: throw MalformedMessage("unknown finish reason")
        }
        return output
    }
}
