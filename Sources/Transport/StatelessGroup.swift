import Foundation
import Messages

/// A communication group built from a rendezvous store, a name, a generation, a rank and a size,
/// with no process-wide state: a process may hold several groups at once, and a new (standby)
/// group can form while an old one keeps working.
///
/// Formation: each rank listens on port 0 and publishes the address it got under
/// `group/NAME/GENERATION/address/RANK`; every rank connects to each lower rank and accepts from
/// each higher one, and says who it is with the store's join token (read through a ``HelloGate``,
/// so that nothing is allocated for a connection that has not presented it). Collectives are SPMD (every rank calls the same ones in
/// the same order) over the full mesh of TCP connections, each ending in an error at its deadline.
///
/// A group is used by one thread at a time (its rank's step loop); a lock enforces it. After a
/// collective fails the group is broken (its streams may be out of step) and refuses further use.
/// Unchecked Sendable: its sockets are used by one thread at a time, which a lock enforces.
public final class StatelessGroup: @unchecked Sendable {
    public let name: String
    public let generation: Int
    public let rank: Int
    public let size: Int
    private var peers: [TCPSocket?]
    private let lock = NSLock()
    private var brokenReason: String?

    public enum Reduction: Sendable {
        case sum, max, min
    }

    /// - Parameter isCancelled: polled while waiting for peers; formation gives up when it says so
    ///   (a reconfiguration abandoned; closing `store` ends its waits too).
    public init(store: StoreClient, name: String, generation: Int, rank: Int, size: Int, host: String = "127.0.0.1",
                timeout: Duration = .seconds(60), isCancelled: @Sendable () -> Bool = { false }) throws {
        precondition(size >= 1 && (0..<size).contains(rank), "rank \(rank) outside a group of \(size)")
        self.name = name
        self.generation = generation
        self.rank = rank
        self.size = size
        peers = [TCPSocket?](repeating: nil, count: size)
        let prefix = "group/\(name)/\(generation)"
        let deadline = ContinuousClock.now + timeout
        /// Waits on the store in slices, so that a cancellation ends the wait within one.
        func waiting<Value>(_ operation: (Duration) throws -> Value) throws -> Value {
            while true {
                if isCancelled() { throw TransportError.refused("group \(prefix): formation cancelled") }
                let remaining = deadline - .now
                guard remaining > .zero else { return try operation(.zero) }
                do {
                    return try operation(min(remaining, .milliseconds(200)))
                } catch TransportError.timeout where ContinuousClock.now < deadline {
                    continue
                }
            }
        }
        let gate = HelloGate(listener: try TCPSocket.listen(host: host, port: 0))
        defer { gate.close() }
        try store.set("\(prefix)/address/\(rank)", Array("\(host):\(gate.port)".utf8))

        var hello = ByteWriter()
        hello.string(prefix)
        hello.u32(UInt32(rank))
        hello.string(store.token)
        for lower in 0..<rank {
            let address = String(decoding: try waiting { try store.get("\(prefix)/address/\(lower)", timeout: $0) }, as: UTF8.self)
            let parts = address.split(separator: ":")
            guard parts.count == 2, let port = Int(parts[1]) else {
                throw TransportError.protocolViolation("rank \(lower) published '\(address)'")
            }
            let socket = try TCPSocket.connect(host: String(parts[0]), port: port, deadline: deadline)
            try socket.sendFrame(hello.bytes, deadline: deadline)
            peers[lower] = socket
        }
        var missing = size - 1 - rank
        while missing > 0 {
            if isCancelled() { throw TransportError.refused("group \(prefix): formation cancelled") }
            guard let (socket, frame) = gate.next(deadline: min(deadline, .now + .milliseconds(100))) else {
                guard ContinuousClock.now < deadline else {
                    throw TransportError.timeout("group \(prefix): rank \(rank) waiting for \(missing) higher ranks")
                }
                continue
            }
            var reader = ByteReader(frame)
            guard let theirPrefix = try? reader.string(), let theirRank = try? Int(reader.u32()), let token = try? reader.string(),
                  JoinToken.matches(token, store.token), theirPrefix == prefix, theirRank > rank, theirRank < size,
                  peers[theirRank] == nil else {
                socket.close()
                continue
            }
            peers[theirRank] = socket
            missing -= 1
        }
        let arrived = try store.add("barrier/\(prefix)/formed/arrived", 1)
        if arrived == Int64(size) { try store.set("barrier/\(prefix)/formed/done", []) }
        try waiting { try store.wait(for: ["barrier/\(prefix)/formed/done"], timeout: $0) }
    }

    deinit { close() }

    /// Ends, from any thread, a collective that waits in another (a peer is known to be lost):
    /// the connections close without the group's lock, so that collective fails at once and
    /// breaks the group. (`peers` is not written after `init`.)
    public func interrupt() {
        for peer in peers { peer?.close() }
    }

    /// Closes every connection; peers see their next collective fail.
    public func close() {
        lock.lock()
        defer { lock.unlock() }
        for peer in peers { peer?.close() }
        brokenReason = brokenReason ?? "the group was closed"
    }

    // MARK: Collectives

    /// Every rank's `bytes`, in rank order.
    public func allGather(_ bytes: [UInt8], timeout: Duration) throws -> [[UInt8]] {
        try allToAll([[UInt8]](repeating: bytes, count: size), timeout: timeout)
    }

    /// Sends `perRank[r]` to rank r (any sizes, empty included) and returns what each rank sent here.
    public func allToAll(_ perRank: [[UInt8]], timeout: Duration) throws -> [[UInt8]] {
        precondition(perRank.count == size, "one message per rank")
        let others = (0..<size).filter { $0 != rank }
        var received = try guarded(timeout) { sockets, deadline in
            try PeerExchange.run(outgoing: others.map { (sockets[$0]!, perRank[$0]) },
                                 incoming: others.map { sockets[$0]! }, deadline: deadline)
        }
        received.insert(perRank[rank], at: rank)
        return received
    }

    /// ``allToAll(_:timeout:)`` from and into the caller's memory: `sending[sendRanges[r]]` goes
    /// to rank r, and what rank r sends lands in `receiving[receiveRanges[r]]`, whose size must be
    /// what r sends; this rank's own range is copied. Nothing is allocated per call (the rows of a
    /// MoE layer are megabytes).
    public func allToAll(sending: UnsafeRawBufferPointer, sendRanges: [Range<Int>], receiving: UnsafeMutableRawBufferPointer,
                         receiveRanges: [Range<Int>], timeout: Duration) throws {
        precondition(sendRanges.count == size && receiveRanges.count == size, "one range per rank")
        precondition(sendRanges.allSatisfy { $0.upperBound <= sending.count } && receiveRanges.allSatisfy { $0.upperBound <= receiving.count },
                     "ranges outside the buffers")
        guard sendRanges[rank].count == receiveRanges[rank].count else {
            throw TransportError.protocolViolation("\(sendRanges[rank].count) bytes to itself where \(receiveRanges[rank].count) were due")
        }
        if !sendRanges[rank].isEmpty {
            UnsafeMutableRawBufferPointer(rebasing: receiving[receiveRanges[rank]])
                .copyMemory(from: UnsafeRawBufferPointer(rebasing: sending[sendRanges[rank]]))
        }
        let others = (0..<size).filter { $0 != rank }
        try guarded(timeout) { sockets, deadline in
            try PeerExchange.run(outgoing: others.map { (sockets[$0]!, UnsafeRawBufferPointer(rebasing: sending[sendRanges[$0]])) },
                                 incoming: others.map { (sockets[$0]!, UnsafeMutableRawBufferPointer(rebasing: receiving[receiveRanges[$0]])) },
                                 deadline: deadline)
        }
    }

    /// `root`'s bytes on every rank.
    public func broadcast(_ bytes: [UInt8], root: Int, timeout: Duration) throws -> [UInt8] {
        if rank == root {
            let others = (0..<size).filter { $0 != rank }
            _ = try guarded(timeout) { sockets, deadline in
                try PeerExchange.run(outgoing: others.map { (sockets[$0]!, bytes) }, incoming: [], deadline: deadline)
            }
            return bytes
        }
        return try guarded(timeout) { sockets, deadline in
            try PeerExchange.run(outgoing: [], incoming: [sockets[root]!], deadline: deadline)[0]
        }
    }

    public func send(_ bytes: [UInt8], to peer: Int, timeout: Duration) throws {
        precondition(peer != rank && (0..<size).contains(peer), "no peer \(peer)")
        _ = try guarded(timeout) { sockets, deadline in
            try PeerExchange.run(outgoing: [(sockets[peer]!, bytes)], incoming: [], deadline: deadline)
        }
    }

    public func receive(from peer: Int, timeout: Duration) throws -> [UInt8] {
        precondition(peer != rank && (0..<size).contains(peer), "no peer \(peer)")
        return try guarded(timeout) { sockets, deadline in
            try PeerExchange.run(outgoing: [], incoming: [sockets[peer]!], deadline: deadline)[0]
        }
    }

    public func barrier(timeout: Duration) throws {
        _ = try allGather([], timeout: timeout)
    }

    /// Element-wise reduction; every rank gets the same result (reduced in rank order).
    public func allReduce(_ values: [Int64], _ reduction: Reduction, timeout: Duration) throws -> [Int64] {
        let all = try allGather(Self.encode(values), timeout: timeout).map(Self.decodeIntegers)
        return try Self.reduce(all, count: values.count, reduction)
    }

    public func allReduce(_ values: [Double], _ reduction: Reduction, timeout: Duration) throws -> [Double] {
        let all = try allGather(Self.encode(values.map { Int64(bitPattern: $0.bitPattern) }), timeout: timeout)
            .map { try Self.decodeIntegers($0).map { Double(bitPattern: UInt64(bitPattern: $0)) } }
        return try Self.reduce(all, count: values.count, reduction)
    }

    private static func reduce<Value: Comparable & AdditiveArithmetic>(_ all: [[Value]], count: Int,
                                                                      _ reduction: Reduction) throws -> [Value] {
        guard all.allSatisfy({ $0.count == count }) else {
            throw TransportError.protocolViolation("ranks reduced vectors of different lengths")
        }
        var result = all[0]
        for vector in all.dropFirst() {
            for index in 0..<count {
                switch reduction {
                case .sum: result[index] += vector[index]
                case .max: result[index] = Swift.max(result[index], vector[index])
                case .min: result[index] = Swift.min(result[index], vector[index])
                }
            }
        }
        return result
    }

    private static func encode(_ values: [Int64]) -> [UInt8] {
        var writer = ByteWriter()
        for value in values { writer.i64(value) }
        return writer.bytes
    }

    private static func decodeIntegers(_ bytes: [UInt8]) throws -> [Int64] {
        guard bytes.count % 8 == 0 else { throw TransportError.protocolViolation("a vector of \(bytes.count) bytes") }
        var reader = ByteReader(bytes)
        return try (0..<(bytes.count / 8)).map { _ in try reader.i64() }
    }

    /// Runs one collective under the lock; a failure breaks the group for good.
    private func guarded<Result>(_ timeout: Duration,
                                 _ body: ([TCPSocket?], ContinuousClock.Instant) throws -> Result) throws -> Result {
        lock.lock()
        defer { lock.unlock() }
        if let brokenReason { throw TransportError.refused("group \(name)/\(generation) is unusable: \(brokenReason)") }
        do {
            return try body(peers, .now + timeout)
        } catch {
            brokenReason = "\(error)"
            throw error
        }
    }
}
