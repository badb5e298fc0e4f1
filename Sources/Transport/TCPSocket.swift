import Compute
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// A blocking TCP socket with deadlines: every read and write waits in `poll` until the deadline,
/// so no operation can hang. Used by the store and the CPU collectives, whose threads own their
/// sockets; one socket is never used by two threads at once (callers lock around it).
/// Unchecked Sendable: a file descriptor (atomic); callers never use one socket from two threads at once.
public final class TCPSocket: @unchecked Sendable {
    // Atomic because another thread may close the socket while its owner waits in it.
    private let storedDescriptor: Atomic<Int32>

    /// −1 once closed.
    var descriptor: Int32 { storedDescriptor.load(ordering: .acquiring) }

    init(descriptor: Int32) {
        storedDescriptor = Atomic(descriptor)
        var one: Int32 = 1
        setsockopt(descriptor, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    deinit { close() }

    /// Shuts the connection down (waking a thread blocked in it) and closes it; later calls do nothing.
    public func close() { closeOnce(storedDescriptor) }

    /// Listens on `host` (an IPv4 address), port 0 picking a free one; see ``TCPListener/port``.
    public static func listen(host: String, port: Int) throws -> TCPListener {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TransportError.system("socket", errno) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = try socketAddress(host: host, port: port)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        // Non-blocking, so that an accept after poll never waits on a connection that went away in between.
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        guard bound == 0, Glibc.listen(fd, 128) == 0 else {
            let error = errno
            _ = Glibc.close(fd)
            throw TransportError.system("bind \(host):\(port)", error)
        }
        var actual = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &actual) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return TCPListener(descriptor: fd, port: Int(UInt16(bigEndian: actual.sin_port)))
    }

    /// Connects, retrying refused connections until `deadline` (the peer may not listen yet).
    public static func connect(host: String, port: Int, deadline: ContinuousClock.Instant) throws -> TCPSocket {
        var address = try socketAddress(host: host, port: port)
        while true {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { throw TransportError.system("socket", errno) }
            let result = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            if result == 0 { return TCPSocket(descriptor: fd) }
            let error = errno
            _ = Glibc.close(fd)
            guard error == ECONNREFUSED || error == EINTR || error == ETIMEDOUT, ContinuousClock.now < deadline else {
                if ContinuousClock.now >= deadline { throw TransportError.timeout("connect to \(host):\(port)") }
                throw TransportError.system("connect to \(host):\(port)", error)
            }
            usleep(20_000)
        }
    }

    public func write(_ bytes: UnsafeRawBufferPointer, deadline: ContinuousClock.Instant) throws {
        var offset = 0
        while offset < bytes.count {
            try wait(for: Int16(POLLOUT), deadline: deadline, operation: "write")
            let sent = send(descriptor, bytes.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
            if sent < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                throw TransportError.connectionClosed("write: \(String(cString: strerror(errno)))")
            }
            offset += sent
        }
    }

    public func read(into bytes: UnsafeMutableRawBufferPointer, deadline: ContinuousClock.Instant) throws {
        var offset = 0
        while offset < bytes.count {
            try wait(for: Int16(POLLIN), deadline: deadline, operation: "read")
            let received = recv(descriptor, bytes.baseAddress! + offset, bytes.count - offset, 0)
            if received == 0 { throw TransportError.connectionClosed("the peer closed the connection") }
            if received < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                throw TransportError.connectionClosed("read: \(String(cString: strerror(errno)))")
            }
            offset += received
        }
    }

    /// Whether the peer has closed its end (checked without consuming data).
    public var peerHasClosed: Bool {
        var entry = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        guard poll(&entry, 1, 0) > 0 else { return false }
        if entry.revents & Int16(POLLHUP | POLLERR) != 0 { return true }
        var byte: UInt8 = 0
        return recv(descriptor, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT)) == 0
    }

    private func wait(for events: Int16, deadline: ContinuousClock.Instant, operation: String) throws {
        while true {
            guard descriptor >= 0 else { throw TransportError.connectionClosed("the socket is closed") }
            let remaining = deadline - ContinuousClock.now
            guard remaining > .zero else { throw TransportError.timeout(operation) }
            let milliseconds = Int32(min(remaining.milliseconds + 1, 1000))
            var entry = pollfd(fd: descriptor, events: events, revents: 0)
            let ready = poll(&entry, 1, milliseconds)
            if ready > 0 { return }
            if ready < 0 && errno != EINTR { throw TransportError.system("poll", errno) }
        }
    }

    static func socketAddress(host: String, port: Int) throws -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        let name = host == "localhost" ? "127.0.0.1" : host
        guard inet_pton(AF_INET, name, &address.sin_addr) == 1 else {
            throw TransportError.invalidAddress("'\(host)' is not an IPv4 address")
        }
        return address
    }
}

/// A listening socket bound to ``port``.
/// Unchecked Sendable: a file descriptor, closed once.
public final class TCPListener: @unchecked Sendable {
    private let storedDescriptor: Atomic<Int32>
    public let port: Int

    /// −1 once closed.
    var descriptor: Int32 { storedDescriptor.load(ordering: .acquiring) }

    init(descriptor: Int32, port: Int) {
        storedDescriptor = Atomic(descriptor)
        self.port = port
    }

    deinit { close() }

    public func close() { closeOnce(storedDescriptor) }
}

extension TCPListener {
    /// A connection waiting in the backlog, without waiting for one.
    func acceptReady() -> TCPSocket? {
        let fd = Glibc.accept(descriptor, nil, nil)
        return fd >= 0 ? TCPSocket(descriptor: fd) : nil
    }
}

/// Takes the descriptor out (so that exactly one caller closes it), then shuts it down and closes it.
private func closeOnce(_ descriptor: borrowing Atomic<Int32>) {
    let old = descriptor.exchange(-1, ordering: .acquiringAndReleasing)
    guard old >= 0 else { return }
    _ = Glibc.shutdown(old, Int32(SHUT_RDWR))
    _ = Glibc.close(old)
}
