import Elastic

extension ByteWriter {
    mutating func command(_ command: ControlCommand) {
        i64(Int64(command.id))
        i64(Int64(command.generation))
        switch command.action {
        case .prepare(let size):
            u8(1)
            i64(Int64(size))
        case .commit: u8(2)
        case .abandon: u8(3)
        case .recover(let rank, let size, let round):
            u8(4)
            i64(Int64(rank.index))
            i64(Int64(size))
            i64(Int64(round))
        }
    }

    mutating func report(_ report: ReconfigurationReport) {
        switch report {
        case .prepared(let generation):
            u8(1)
            i64(Int64(generation))
        case .switched(let generation):
            u8(2)
            i64(Int64(generation))
        case .failed(let generation, let reason):
            u8(3)
            i64(Int64(generation))
            string(reason)
        case .lost(let reason):
            u8(4)
            string(reason)
        case .broken(let generation, let reason):
            u8(5)
            i64(Int64(generation))
            string(reason)
        }
    }
}

extension ByteReader {
    mutating func command() throws -> ControlCommand {
        let id = Int(try i64()), generation = Int(try i64())
        switch try u8() {
        case 1: return ControlCommand(id: id, generation: generation, action: .prepare(size: Int(try i64())))
        case 2: return ControlCommand(id: id, generation: generation, action: .commit)
        case 3: return ControlCommand(id: id, generation: generation, action: .abandon)
        case 4:
            let rank = Int(try i64()), size = Int(try i64()), round = Int(try i64())
            guard size >= 1, (0..<size).contains(rank) else { throw MalformedMessage("a recovery as rank \(rank) of \(size)") }
            return ControlCommand(id: id, generation: generation, action: .recover(rank: RankID(rank), size: size, round: round))
        default: throw MalformedMessage("unknown control command")
        }
    }

    mutating func report() throws -> ReconfigurationReport {
        switch try u8() {
        case 1: return .prepared(generation: Int(try i64()))
        case 2: return .switched(generation: Int(try i64()))
        case 3: return .failed(generation: Int(try i64()), reason: try string())
        case 4: return .lost(reason: try string())
        case 5: return .broken(generation: Int(try i64()), reason: try string())
        default: throw MalformedMessage("unknown reconfiguration report")
        }
    }
}
