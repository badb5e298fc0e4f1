import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// One TCP connection to the server, written and read byte by byte: what a test needs to reuse
/// a connection for many requests, or to behave as a slow or broken client would.
///
/// Reads block, so they run on a thread of their own (``response(timeout:)`` and
/// ``closesWithin(_:)`` are async): a test waiting on the server never holds one of the few
/// threads that every other test's tasks run on. Used by one task at a time.
final class RawHTTPConnection: @unchecked Sendable {
    struct Response {
        let status: Int
        let headers: [String: String]
        let body: [UInt8]
        var text: String { String(decoding: body, as: UTF8.self) }
    }

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    private var descriptor: Int32
    /// Received and not yet consumed: `buffered[offset...]`.
    private var buffered: [UInt8] = []
    /// Names the connection in errors.
    let name: String

    init(port: Int, name: String = "a connection") throws {
        self.name = name
        descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result == 0 else {
            Glibc.close(descriptor)
            throw Failure(description: "connect: \(String(cString: strerror(errno)))")
        }
    }

    deinit { close() }

    /// Closes the connection, as a client that goes away does.
    func close() {
        guard descriptor >= 0 else { return }
        Glibc.close(descriptor)
        descriptor = -1
    }

    func send(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress!, $0.count, Int32(MSG_NOSIGNAL)) }
            guard sent > 0 else { throw Failure(description: "send: \(String(cString: strerror(errno)))") }
            offset += sent
        }
    }

    func send(_ text: String) throws { try send(Array(text.utf8)) }

    /// A request with a body and its Content-Length.
    func request(_ method: String, _ path: String, body: String = "", headers: [String] = []) throws {
        let lines = ["\(method) \(path) HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json",
                     "Content-Length: \(body.utf8.count)"] + headers
        try send(lines.joined(separator: "\r\n") + "\r\n\r\n" + body)
    }

    /// Bytes that arrive within `timeout`; empty when the server closed the connection.
    private func receive(timeout: Duration) throws -> [UInt8] {
        var entry = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        // A negative poll timeout would wait forever.
        let milliseconds = Int32(max(0, timeout / .milliseconds(1)))
        guard poll(&entry, 1, milliseconds) > 0 else { throw Failure(description: "\(name): nothing arrived in \(timeout)") }
        var chunk = [UInt8](repeating: 0, count: 65_536)
        let count = chunk.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress!, $0.count, 0) }
        guard count >= 0 else {
            if errno == ECONNRESET { return [] }
            throw Failure(description: "recv: \(String(cString: strerror(errno)))")
        }
        return Array(chunk[..<count])
    }

    /// Reads until `enough` finds what it needs in the unread bytes (`buffered[offset...]`) and returns where it ends.
    private var offset = 0

    private func fill(deadline: ContinuousClock.Instant, until enough: (ArraySlice<UInt8>) -> Int?) throws -> Int {
        while true {
            if let end = enough(buffered[offset...]) { return end }
            let more = try receive(timeout: deadline - .now)
            guard !more.isEmpty else {
                throw Failure(description: "\(name): the server closed the connection mid-response after \(buffered.count - offset) bytes")
            }
            buffered += more
        }
    }

    private func take(_ count: Int) -> ArraySlice<UInt8> {
        defer { offset += count }
        return buffered[offset..<(offset + count)]
    }

    /// Reads one whole response (Content-Length or chunked).
    func response(timeout: Duration = .seconds(60)) async throws -> Response {
        try await offThePool { try self.blockingResponse(timeout: timeout) }
    }

    /// Whether the server closes the connection within `timeout` (reading and dropping what comes).
    func closesWithin(_ timeout: Duration) async -> Bool {
        (try? await offThePool { self.waitForClose(timeout) }) ?? false
    }

    /// ``response(timeout:)`` on the calling thread, for tests that run clients on threads of their own.
    func blockingResponse(timeout: Duration = .seconds(60)) throws -> Response {
        let deadline = ContinuousClock.now + timeout
        if offset > 0 {
            buffered.removeFirst(offset)
            offset = 0
        }
        func find(_ pattern: [UInt8], in bytes: ArraySlice<UInt8>) -> Int? {
            guard bytes.count >= pattern.count else { return nil }
            var index = bytes.startIndex
            while index + pattern.count <= bytes.endIndex {
                if bytes[index] == pattern[0] && bytes[index..<(index + pattern.count)].elementsEqual(pattern) { return index }
                index += 1
            }
            return nil
        }
        let headEnd = try fill(deadline: deadline) { find(Array("\r\n\r\n".utf8), in: $0) }
        let lines = String(decoding: take(headEnd - offset), as: UTF8.self).components(separatedBy: "\r\n")
        offset += 4
        guard let status = lines.first?.split(separator: " ").dropFirst().first.flatMap({ Int($0) }) else {
            throw Failure(description: "\(name): no status line in \(lines)")
        }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        var body: [UInt8] = []
        if let length = headers["content-length"].flatMap({ Int($0) }) {
            _ = try fill(deadline: deadline) { $0.count >= length ? $0.startIndex + length : nil }
            body = Array(take(length))
        } else if headers["transfer-encoding"]?.lowercased() == "chunked" {
            while true {
                let lineEnd = try fill(deadline: deadline) { find([13, 10], in: $0) }
                let sizeLine = String(decoding: take(lineEnd - offset), as: UTF8.self)
                offset += 2
                let size = Int(sizeLine.split(separator: ";").first ?? "", radix: 16) ?? 0
                _ = try fill(deadline: deadline) { $0.count >= size + 2 ? $0.startIndex + size + 2 : nil }
                body += take(size)
                offset += 2
                if size == 0 { break }
            }
        }
        return Response(status: status, headers: headers, body: body)
    }

    private func waitForClose(_ timeout: Duration) -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            guard let more = try? receive(timeout: deadline - .now) else { return false }
            if more.isEmpty { return true }
        }
        return false
    }
}

/// Runs blocking work on a new thread and waits for it without blocking a thread of the pool.
func offThePool<Value: Sendable>(_ work: @escaping @Sendable () throws -> Value) async throws -> Value {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try work() }) }.start()
    }
}

/// Resident memory of a process, from /proc.
func residentBytes(of pid: Int32) -> Int {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return 0 }
    for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        return (line.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0) * 1024
    }
    return 0
}
