import Compute
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Messages

/// Moves framed messages to and from several peers at once with one `poll` loop over
/// non-blocking sockets, so that no pattern of sends and receives can deadlock on full socket
/// buffers (every rank sending first is fine). Every collective is one or more exchanges.
enum PeerExchange {
    /// Sends `outgoing[i].bytes` to `outgoing[i].socket` and reads one frame from each socket of
    /// `incoming`; returns the frames in `incoming`'s order. Throws at `deadline`.
    static func run(outgoing: [(socket: TCPSocket, bytes: [UInt8])], incoming: [TCPSocket],
                    deadline: ContinuousClock.Instant) throws -> [[UInt8]] {
        try run(outgoing.map { Outgoing(socket: $0.socket, payload: .array($0.bytes)) },
                incoming.map { Incoming(socket: $0, destination: nil) }, deadline: deadline)
    }

    /// The same from and into memory the caller owns for the call: no buffer is allocated, so a
    /// rank exchanging megabytes of rows per layer does not fault fresh pages in every time. Each
    /// incoming frame must be exactly its destination's size.
    static func run(outgoing: [(socket: TCPSocket, bytes: UnsafeRawBufferPointer)],
                    incoming: [(socket: TCPSocket, into: UnsafeMutableRawBufferPointer)], deadline: ContinuousClock.Instant) throws {
        _ = try run(outgoing.map { Outgoing(socket: $0.socket, payload: .memory($0.bytes)) },
                    incoming.map { Incoming(socket: $0.socket, destination: $0.into) }, deadline: deadline)
    }

    private static func run(_ outgoing: [Outgoing], _ incoming: [Incoming], deadline: ContinuousClock.Instant) throws -> [[UInt8]] {
        var sends = outgoing
        var receives = incoming
        var entries: [pollfd] = []
        var owners: [(isSend: Bool, index: Int)] = []
        while sends.contains(where: { !$0.isDone }) || receives.contains(where: { !$0.isDone }) {
            entries.removeAll(keepingCapacity: true)
            owners.removeAll(keepingCapacity: true)
            for (index, send) in sends.enumerated() where !send.isDone {
                entries.append(pollfd(fd: send.socket.descriptor, events: Int16(POLLOUT), revents: 0))
                owners.append((true, index))
            }
            for (index, receive) in receives.enumerated() where !receive.isDone {
                entries.append(pollfd(fd: receive.socket.descriptor, events: Int16(POLLIN), revents: 0))
                owners.append((false, index))
            }
            let remaining = deadline - ContinuousClock.now
            guard remaining > .zero else { throw TransportError.timeout("collective exchange") }
            let ready = poll(&entries, nfds_t(entries.count), Int32(min(remaining.milliseconds + 1, 1000)))
            if ready < 0 && errno != EINTR { throw TransportError.system("poll", errno) }
            guard ready > 0 else { continue }
            for (entry, owner) in zip(entries, owners) where entry.revents != 0 {
                if owner.isSend {
                    try sends[owner.index].advance()
                } else {
                    try receives[owner.index].advance()
                }
            }
        }
        return receives.map(\.payload)
    }

    private enum Payload {
        case array([UInt8])
        case memory(UnsafeRawBufferPointer)

        var count: Int {
            switch self {
            case .array(let bytes): bytes.count
            case .memory(let bytes): bytes.count
            }
        }

        func withBytes<Result>(_ body: (UnsafeRawBufferPointer) -> Result) -> Result {
            switch self {
            case .array(let bytes): bytes.withUnsafeBytes(body)
            case .memory(let bytes): body(bytes)
            }
        }
    }

    private struct Outgoing {
        let socket: TCPSocket
        let header: [UInt8]
        let payload: Payload
        var offset = 0

        init(socket: TCPSocket, payload: Payload) {
            var frame = ByteWriter()
            frame.u32(UInt32(payload.count))
            self.socket = socket
            self.header = frame.bytes
            self.payload = payload
        }

        var isDone: Bool { offset == header.count + payload.count }

        mutating func advance() throws {
            while !isDone {
                let sent: Int
                if offset < header.count {
                    sent = header.withUnsafeBytes {
                        send(socket.descriptor, $0.baseAddress! + offset, header.count - offset, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
                    }
                } else {
                    let start = offset - header.count
                    sent = payload.withBytes {
                        send(socket.descriptor, $0.baseAddress.map { $0 + start }, $0.count - start, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
                    }
                }
                if sent < 0 {
                    if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { return }
                    throw TransportError.connectionClosed("send to a peer: \(String(cString: strerror(errno)))")
                }
                offset += sent
            }
        }
    }

    private struct Incoming {
        let socket: TCPSocket
        /// Where the payload goes; `nil`: into `payload`, allocated once the header gives its size.
        let destination: UnsafeMutableRawBufferPointer?
        var header = [UInt8](repeating: 0, count: 4)
        var headerFilled = 0
        var payload: [UInt8] = []
        var payloadFilled = 0
        var expected: Int?

        init(socket: TCPSocket, destination: UnsafeMutableRawBufferPointer?) {
            self.socket = socket
            self.destination = destination
        }

        var isDone: Bool { expected.map { payloadFilled == $0 } ?? false }

        mutating func advance() throws {
            while !isDone {
                let received: Int
                if expected == nil {
                    received = header.withUnsafeMutableBytes {
                        recv(socket.descriptor, $0.baseAddress! + headerFilled, 4 - headerFilled, Int32(MSG_DONTWAIT))
                    }
                } else if let destination {
                    received = recv(socket.descriptor, destination.baseAddress.map { $0 + payloadFilled }, expected! - payloadFilled,
                                    Int32(MSG_DONTWAIT))
                } else {
                    let count = expected! - payloadFilled
                    received = payload.withUnsafeMutableBytes {
                        recv(socket.descriptor, $0.baseAddress! + payloadFilled, count, Int32(MSG_DONTWAIT))
                    }
                }
                if received == 0 { throw TransportError.connectionClosed("a peer closed its connection") }
                if received < 0 {
                    if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { return }
                    throw TransportError.connectionClosed("receive from a peer: \(String(cString: strerror(errno)))")
                }
                if expected == nil {
                    headerFilled += received
                    if headerFilled == 4 {
                        var reader = ByteReader(header)
                        let length = Int(try reader.u32())
                        guard length <= TCPSocket.maxFrameBytes else {
                            throw TransportError.protocolViolation("a frame of \(length) bytes")
                        }
                        if let destination {
                            guard length == destination.count else {
                                throw TransportError.protocolViolation("a frame of \(length) bytes where \(destination.count) were due")
                            }
                        } else {
                            payload = [UInt8](repeating: 0, count: length)
                        }
                        expected = length
                    }
                } else {
                    payloadFilled += received
                }
            }
        }
    }
}
