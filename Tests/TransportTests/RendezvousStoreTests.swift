import Foundation
import Synchronization
import Testing
import Transport

struct RendezvousStoreTests {
    private func connect(_ store: RendezvousStore, token: String = "t") throws -> StoreClient {
        try StoreClient(host: "127.0.0.1", port: store.port, token: token, connectTimeout: .seconds(5))
    }

    @Test func operationsDoWhatTheySay() throws {
        let store = try RendezvousStore(token: "t")
        defer { store.close() }
        let client = try connect(store)
        try client.set("a", [1, 2, 3])
        #expect(try client.get("a", timeout: .seconds(1)) == [1, 2, 3])
        #expect(try client.add("n", 5) == 5)
        #expect(try client.add("n", -2) == 3)
        let first = try client.compareAndSet("c", expected: nil, desired: [7])
        #expect(first.swapped && first.current == [7])
        let refused = try client.compareAndSet("c", expected: [9], desired: [8])
        #expect(!refused.swapped && refused.current == [7])
        let second = try client.compareAndSet("c", expected: [7], desired: [8])
        #expect(second.swapped && second.current == [8])
        #expect(try client.delete("c"))
        #expect(try !client.delete("c"))
        try client.wait(for: ["a", "n"], timeout: .seconds(1))
    }

    @Test func waitsEndAtTheirDeadlineOrWhenTheKeyArrives() throws {
        let store = try RendezvousStore(token: "t")
        defer { store.close() }
        let waiter = try connect(store), writer = try connect(store)
        let started = ContinuousClock.now
        #expect(throws: TransportError.self) { try waiter.get("missing", timeout: .milliseconds(300)) }
        let waited = ContinuousClock.now - started
        #expect(waited >= .milliseconds(300) && waited < .seconds(3))
        #expect(throws: TransportError.self) { try waiter.wait(for: ["x", "y"], timeout: .milliseconds(200)) }

        DispatchQueue.global().asyncAfter(deadline: .now() + 0.2) { try? writer.set("late", [42]) }
        #expect(try waiter.get("late", timeout: .seconds(10)) == [42])
    }

    @Test func aWrongTokenIsRefused() throws {
        let store = try RendezvousStore(token: "right")
        defer { store.close() }
        #expect(throws: TransportError.self) { try connect(store, token: "wrong") }
        _ = try connect(store, token: "right")
    }

    @Test func aBarrierReleasesEveryoneTogether() throws {
        let store = try RendezvousStore(token: "t")
        defer { store.close() }
        let clients = try (0..<4).map { _ in try connect(store) }
        let released = DispatchGroup()
        let failures = Mutex(0)
        for client in clients.dropLast() {
            DispatchQueue.global().async(group: released) {
                do { try client.barrier("round-1", size: 4, timeout: .seconds(10)) } catch {
                    failures.withLock { $0 += 1 }
                }
            }
        }
        #expect(released.wait(timeout: .now() + 0.3) == .timedOut, "three of four must still wait")
        try clients[3].barrier("round-1", size: 4, timeout: .seconds(10))
        #expect(released.wait(timeout: .now() + 10) == .success)
        #expect(failures.withLock { $0 } == 0)
        #expect(throws: TransportError.self) { try clients[0].barrier("round-2", size: 2, timeout: .milliseconds(200)) }
    }

    /// A client that vanishes in the middle of a waiting get, or halfway through a frame, costs
    /// the store nothing: its connection is dropped and everyone else goes on.
    @Test func clientsThatDisconnectMidOperationAreDropped() throws {
        let store = try RendezvousStore(token: "t")
        defer { store.close() }
        let survivor = try connect(store)

        let quitter = try connect(store)
        let blocked = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            _ = try? quitter.get("never", timeout: .seconds(60))
            blocked.signal()
        }
        Thread.sleep(forTimeInterval: 0.2)
        quitter.close()
        #expect(blocked.wait(timeout: .now() + 5) == .success)

        // Half a frame: a length prefix promising 100 bytes, then nothing, then gone.
        let raw = try TCPSocket.connect(host: "127.0.0.1", port: store.port, deadline: .now + .seconds(5))
        try [UInt8]([100, 0, 0, 0, 1, 2]).withUnsafeBytes { try raw.write($0, deadline: .now + .seconds(1)) }
        raw.close()

        // Generous: a machine busy with other tests may take seconds to schedule the store's thread.
        let deadline = Date().addingTimeInterval(30)
        while store.connectionCount > 1 && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        #expect(store.connectionCount == 1, "only the survivor stays connected")
        try survivor.set("never", [1])
        #expect(try survivor.get("never", timeout: .seconds(1)) == [1])
        #expect(try survivor.add("count", 1) == 1)
    }
}
