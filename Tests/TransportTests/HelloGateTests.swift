import Compute
import Foundation
import Messages
import Synchronization
import Testing
@testable import Transport

/// Every port between processes: nothing is allocated, no thread started and no one waits for a
/// connection that has not presented its hello.
struct HelloGateTests {
    private static func frame(_ bytes: [UInt8]) -> [UInt8] {
        var writer = ByteWriter()
        writer.data(bytes)
        return writer.bytes
    }

    private static func connect(_ port: Int) throws -> TCPSocket {
        try TCPSocket.connect(host: "127.0.0.1", port: port, deadline: .now + .seconds(5))
    }

    private static func send(_ socket: TCPSocket, _ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try socket.write($0, deadline: .now + .seconds(5)) }
    }

    /// Polls `socket` until the other side closes it or `timeout` passes.
    private static func closes(_ socket: TCPSocket, within timeout: Duration) -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if socket.peerHasClosed { return true }
            usleep(10_000)
        }
        return false
    }

    @Test func aSilentConnectionDelaysNoOther() throws {
        var limits = HelloGate.Limits()
        limits.helloTimeout = .seconds(30)
        let gate = HelloGate(listener: try TCPSocket.listen(host: "127.0.0.1", port: 0), limits: limits)
        defer { gate.close() }
        let silent = try Self.connect(gate.port)
        let halfway = try Self.connect(gate.port)
        try Self.send(halfway, [10, 0, 0, 0, 1, 2])
        let good = try Self.connect(gate.port)
        try Self.send(good, Self.frame([7, 7, 7]))
        let started = ContinuousClock.now
        let admitted = try #require(gate.next(deadline: .now + .seconds(10)))
        #expect(admitted.hello == [7, 7, 7])
        #expect(ContinuousClock.now - started < .seconds(5))
        #expect(gate.pendingCount == 2)
        withExtendedLifetime((silent, halfway)) {}
    }

    @Test func anOversizedOrLateHelloIsClosedAtOnce() throws {
        var limits = HelloGate.Limits()
        limits.helloTimeout = .milliseconds(300)
        let gate = HelloGate(listener: try TCPSocket.listen(host: "127.0.0.1", port: 0), limits: limits)
        defer { gate.close() }
        let huge = try Self.connect(gate.port)
        try Self.send(huge, [0x00, 0x00, 0x00, 0x40])
        let oneOver = try Self.connect(gate.port)
        try Self.send(oneOver, [0x01, 0x10, 0x00, 0x00])
        let late = try Self.connect(gate.port)
        #expect(gate.next(deadline: .now + .seconds(1)) == nil)
        #expect(Self.closes(huge, within: .seconds(1)) && Self.closes(oneOver, within: .seconds(1)))
        #expect(Self.closes(late, within: .seconds(1)), "silent past the hello timeout")
        #expect(gate.pendingCount == 0)
    }

    @Test func waitingConnectionsAreCappedAndAFloodCannotKeepAHelloOut() throws {
        var limits = HelloGate.Limits()
        limits.pendingConnections = 4
        let gate = HelloGate(listener: try TCPSocket.listen(host: "127.0.0.1", port: 0), limits: limits)
        defer { gate.close() }
        let sockets = try (0..<10).map { _ in try Self.connect(gate.port) }
        #expect(gate.next(deadline: .now + .milliseconds(500)) == nil)
        #expect(gate.pendingCount == 4)
        #expect(sockets.prefix(6).allSatisfy { Self.closes($0, within: .milliseconds(500)) }, "the oldest made room")
        #expect(!sockets.suffix(4).contains { $0.peerHasClosed })
        let good = try Self.connect(gate.port)
        try Self.send(good, Self.frame([1]))
        let flood = try (0..<20).map { _ in try Self.connect(gate.port) }
        #expect(gate.next(deadline: .now + .seconds(10))?.hello == [1], "a hello sent with its connection gets in")
        #expect(gate.pendingCount <= 4)
        withExtendedLifetime(flood) {}
    }

    /// A frame of several receive chunks arrives whole (its memory grows chunk by chunk; the fuzz
    /// test below bounds what a bare length prefix costs), and a limit refuses a longer one.
    @Test func framesOfManyChunksArriveWholeAndALimitRefusesMore() throws {
        let listener = try TCPSocket.listen(host: "127.0.0.1", port: 0)
        defer { listener.close() }
        let sender = try Self.connect(listener.port)
        var accepted: TCPSocket?
        let acceptBy = ContinuousClock.now + .seconds(5)
        while accepted == nil && ContinuousClock.now < acceptBy {
            accepted = listener.acceptReady()
            if accepted == nil { usleep(1_000) }
        }
        let receiver = try #require(accepted)
        let payload = (0..<(3 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let thread = Thread { try? sender.sendFrame(payload, deadline: .now + .seconds(10)) }
        thread.start()
        #expect(try receiver.receiveFrame(deadline: .now + .seconds(10)) == payload)
        #expect(throws: TransportError.self) {
            try Self.send(sender, [0x00, 0x00, 0x00, 0x40])
            _ = try receiver.receiveFrame(deadline: .now + .seconds(5), limit: 1 << 20)
        }
    }

    /// Thousands of connections sending garbage, wrong tokens, cut-off and oversized frames, from
    /// several threads at once: the store answers its real client throughout, frees every bad
    /// connection, and its memory stays bounded.
    @Test func theStoreSurvivesFuzzedFramingAndKeepsServing() throws {
        var limits = HelloGate.Limits()
        limits.helloTimeout = .milliseconds(500)
        let store = try RendezvousStore(token: "right", limits: limits)
        defer { store.close() }
        let client = try StoreClient(host: "127.0.0.1", port: store.port, token: "right", connectTimeout: .seconds(5))
        let before = Self.residentBytes()
        let done = Atomic(0)
        let threads = (0..<4).map { worker in
            Thread {
                var random = SplitMix64(seed: UInt64(worker) &* 0x9e37_79b9_7f4a_7c15 &+ 1)
                for _ in 0..<150 { Self.sendGarbage(to: store.port, token: "right", random: &random) }
                done.add(1, ordering: .releasing)
            }
        }
        for thread in threads { thread.start() }
        var round = 0
        while done.load(ordering: .acquiring) < threads.count {
            try client.set("k\(round % 8)", [UInt8(truncatingIfNeeded: round)])
            #expect(try client.get("k\(round % 8)", timeout: .seconds(5)) == [UInt8(truncatingIfNeeded: round)])
            round += 1
        }
        #expect(round > 0)
        let settle = ContinuousClock.now + .seconds(15)
        while store.connectionCount > 1 && ContinuousClock.now < settle { usleep(20_000) }
        #expect(store.connectionCount == 1, "every fuzzing connection was dropped")
        // The test process's resident memory also holds what tests running beside this one
        // allocate (a few hundred MiB on a busy run), so the bound is what any frame allocated
        // whole would break: a single 1 GiB frame. The server-level test in HardeningTests
        // measures the coordinator's ports in a process of their own, to a tighter bound.
        let grown = Self.residentBytes() - before
        #expect(grown < 1 << 30, "resident memory grew by \(grown >> 20) MiB")
        try client.set("after", [1])
        #expect(try client.get("after", timeout: .seconds(1)) == [1])
    }

    private static func sendGarbage(to port: Int, token: String, random: inout SplitMix64) {
        guard let socket = try? connect(port) else { return }
        defer { socket.close() }
        func hello(_ token: String) -> [UInt8] {
            var writer = ByteWriter()
            writer.u8(0)
            writer.string(token)
            return frame(writer.bytes)
        }
        func randomBytes(_ count: Int) -> [UInt8] { (0..<count).map { _ in UInt8.random(in: 0...255, using: &random) } }
        let bytes: [UInt8]
        switch Int.random(in: 0..<7, using: &random) {
        case 0: bytes = randomBytes(Int.random(in: 0..<64, using: &random))
        case 1: bytes = [0x00, 0x00, 0x00, UInt8.random(in: 0x01...0xFF, using: &random)] + randomBytes(8)
        case 2: bytes = hello("wrong")
        case 3: bytes = frame(randomBytes(Int.random(in: 0..<200, using: &random)))
        case 4:
            // Authenticated, then a frame that announces a gigabyte and stops.
            bytes = hello(token) + [0x00, 0x00, 0x00, 0x40] + randomBytes(100)
        case 5:
            // Authenticated, then requests that are cut off or malformed.
            var request = ByteWriter()
            request.u8(UInt8.random(in: 0...9, using: &random))
            request.u32(UInt32.random(in: 0 ... .max, using: &random))
            bytes = hello(token) + frame(request.bytes + randomBytes(Int.random(in: 0..<16, using: &random)))
        default:
            var prefix = hello(token)
            prefix.removeLast(Int.random(in: 1...prefix.count, using: &random))
            bytes = prefix
        }
        try? send(socket, bytes)
        if Bool.random(using: &random) { usleep(UInt32.random(in: 0..<2_000, using: &random)) }
    }

    private static func residentBytes() -> Int {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            return (line.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0) * 1024
        }
        return 0
    }
}
