import Foundation
import Synchronization
import Testing
import Transport

/// Runs `body(rank)` on `size` threads of their own (ranks block in sockets; the test's own
/// executor must not) and returns each rank's result or error.
func onRanks<Value: Sendable>(_ size: Int, _ body: @escaping @Sendable (Int) throws -> Value) -> [Result<Value, any Error>] {
    let results = Mutex([Result<Value, any Error>?](repeating: nil, count: size))
    let done = DispatchGroup()
    for rank in 0..<size {
        done.enter()
        Thread.detachNewThread {
            let result = Result { try body(rank) }
            results.withLock { $0[rank] = result }
            done.leave()
        }
    }
    done.wait()
    return results.withLock { $0.map { $0! } }
}

struct StatelessGroupTests {
    private func store() throws -> RendezvousStore { try RendezvousStore(token: "t") }

    private func client(_ store: RendezvousStore) throws -> StoreClient {
        try StoreClient(host: "127.0.0.1", port: store.port, token: "t")
    }

    @Test func collectivesGiveEveryRankTheSameAnswer() throws {
        let store = try store()
        defer { store.close() }
        let size = 4
        let results = onRanks(size) { rank -> [String] in
            let group = try StatelessGroup(store: try client(store), name: "world", generation: 0, rank: rank, size: size)
            defer { group.close() }
            let timeout = Duration.seconds(10)
            var log: [String] = []
            let gathered = try group.allGather([UInt8(rank)], timeout: timeout)
            log.append("gather \(gathered)")
            log.append("sum \(try group.allReduce([Int64(rank), 1], .sum, timeout: timeout))")
            log.append("max \(try group.allReduce([Double(rank) * 1.5], .max, timeout: timeout))")
            log.append("min \(try group.allReduce([Int64(10 - rank)], .min, timeout: timeout))")
            log.append("broadcast \(try group.broadcast(rank == 2 ? [9, 9] : [], root: 2, timeout: timeout))")
            // All-to-all with different sizes, one of them empty, and one large enough to fill socket buffers.
            let sent = (0..<size).map { peer in [UInt8](repeating: UInt8(rank * 16 + peer), count: peer == 0 ? 0 : (rank + 1) * 3_000_000 / (peer + 1)) }
            let received = try group.allToAll(sent, timeout: timeout)
            for (peer, bytes) in received.enumerated() {
                let expected = rank == 0 ? 0 : (peer + 1) * 3_000_000 / (rank + 1)
                guard bytes.count == expected, bytes.allSatisfy({ $0 == UInt8(peer * 16 + rank) }) else {
                    throw TransportError.protocolViolation("rank \(rank) got \(bytes.count) wrong bytes from \(peer)")
                }
            }
            // The same from and into memory of the caller's, the bytes for each rank side by side;
            // nothing goes to rank 1, and rank r's own part is copied.
            func bytes(from source: Int, to destination: Int) -> Int { destination == 1 ? 0 : (source + 1) * (destination + 2) * 100_000 }
            func ranges(_ sizes: [Int]) -> [Range<Int>] {
                sizes.indices.map { sizes[..<$0].reduce(0, +)..<sizes[...$0].reduce(0, +) }
            }
            let sendRanges = ranges((0..<size).map { bytes(from: rank, to: $0) })
            let receiveRanges = ranges((0..<size).map { bytes(from: $0, to: rank) })
            var outgoing = [UInt8](repeating: 0, count: sendRanges.last!.upperBound)
            for (peer, range) in sendRanges.enumerated() { outgoing[range] = ArraySlice(repeating: UInt8(rank * 16 + peer), count: range.count) }
            var incoming = [UInt8](repeating: 0xff, count: receiveRanges.last!.upperBound)
            try outgoing.withUnsafeBytes { sending in
                try incoming.withUnsafeMutableBytes { receiving in
                    try group.allToAll(sending: sending, sendRanges: sendRanges, receiving: receiving, receiveRanges: receiveRanges,
                                       timeout: timeout)
                }
            }
            for (peer, range) in receiveRanges.enumerated() where !incoming[range].allSatisfy({ $0 == UInt8(peer * 16 + rank) }) {
                throw TransportError.protocolViolation("rank \(rank) got wrong bytes from \(peer) into caller memory")
            }
            if rank == 1 { try group.send([1, 2, 3], to: 3, timeout: timeout) }
            if rank == 3 { log.append("received \(try group.receive(from: 1, timeout: timeout))") }
            try group.barrier(timeout: timeout)
            return log
        }
        let logs = try results.map { try $0.get() }
        for log in logs {
            #expect(log[0] == "gather \([[0], [1], [2], [3]] as [[UInt8]])")
            #expect(log[1] == "sum [6, 4]")
            #expect(log[2] == "max [4.5]")
            #expect(log[3] == "min [7]")
            #expect(log[4] == "broadcast [9, 9]")
        }
        #expect(logs[3].last == "received [1, 2, 3]")
    }

    /// Ranks 0 and 1 form a second group (a new generation, other members) and run collectives on
    /// it while the first group of four keeps running its own.
    @Test func twoGroupsLiveSideBySide() throws {
        let store = try store()
        defer { store.close() }
        let results = onRanks(4) { rank -> Int64 in
            let first = try StatelessGroup(store: try client(store), name: "ep", generation: 0, rank: rank, size: 4)
            defer { first.close() }
            var total: Int64 = 0
            if rank < 2 {
                let second = try StatelessGroup(store: try client(store), name: "ep", generation: 1, rank: rank, size: 2)
                defer { second.close() }
                for round in 0..<20 {
                    total += try first.allReduce([Int64(round)], .sum, timeout: .seconds(10))[0]
                    total += try second.allReduce([Int64(100)], .sum, timeout: .seconds(10))[0]
                }
            } else {
                for round in 0..<20 { total += try first.allReduce([Int64(round)], .sum, timeout: .seconds(10))[0] }
            }
            return total
        }
        let totals = try results.map { try $0.get() }
        let firstOnly = (0..<20).reduce(Int64(0)) { $0 + Int64($1) * 4 }
        #expect(totals == [firstOnly + 4000, firstOnly + 4000, firstOnly, firstOnly])
    }

    /// Into the caller's memory, a peer's message must be the size the receiver planned for: a
    /// different one is a protocol violation, not a partial or overrun copy.
    @Test func aMessageOfAnotherSizeIntoCallerMemoryIsRefused() throws {
        let store = try store()
        defer { store.close() }
        let results = onRanks(2) { rank -> String in
            let group = try StatelessGroup(store: try client(store), name: "sizes", generation: 0, rank: rank, size: 2)
            defer { group.close() }
            let outgoing = [UInt8](repeating: UInt8(rank + 1), count: 12)
            var incoming = [UInt8](repeating: 0, count: 12)
            // Rank 1 sends 12 bytes; rank 0 plans for 10 of them.
            let sendRanges = rank == 0 ? [0..<0, 0..<5] : [0..<12, 12..<12]
            let receiveRanges = rank == 0 ? [0..<0, 0..<10] : [0..<5, 5..<5]
            do {
                try outgoing.withUnsafeBytes { sending in
                    try incoming.withUnsafeMutableBytes { receiving in
                        try group.allToAll(sending: sending, sendRanges: sendRanges, receiving: receiving, receiveRanges: receiveRanges,
                                           timeout: .seconds(5))
                    }
                }
                return "received \(incoming.prefix(5))"
            } catch {
                return "\(error)"
            }
        }
        let outcomes = try results.map { try $0.get() }
        #expect(outcomes[0].contains("a frame of 12 bytes where 10 were due"), "\(outcomes[0])")
        #expect(outcomes[1] == "received \([UInt8](repeating: 1, count: 5)[...])", "\(outcomes[1])")
    }

    /// A rank that never shows up, or that dies, turns its peers' collectives into errors at the deadline.
    @Test func missingOrDeadPeersEndInErrorsNotHangs() throws {
        let store = try store()
        defer { store.close() }
        let started = ContinuousClock.now
        let lonely = onRanks(1) { _ in
            try StatelessGroup(store: try client(store), name: "ghost", generation: 0, rank: 1, size: 2, timeout: .milliseconds(500))
        }
        #expect(throws: TransportError.self) { try lonely[0].get() }
        #expect(ContinuousClock.now - started < .seconds(5))

        let results = onRanks(3) { rank -> String in
            let group = try StatelessGroup(store: try client(store), name: "fragile", generation: 0, rank: rank, size: 3)
            if rank == 2 {
                group.close()
                return "left"
            }
            do {
                _ = try group.allGather([1], timeout: .seconds(2))
                return "no error"
            } catch let error as TransportError {
                // The group is now unusable, and says so at once.
                do { try group.barrier(timeout: .seconds(2)) } catch { return "broken: \(error)" }
                return "error \(error) then a working barrier"
            }
        }
        let outcomes = try results.map { try $0.get() }
        #expect(outcomes[2] == "left")
        #expect(outcomes[0].hasPrefix("broken") && outcomes[1].hasPrefix("broken"), "\(outcomes)")
    }
}
