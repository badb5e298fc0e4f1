import FrontEnd

/// How long an HTTP/1.1 connection may take over each part of its life; a connection that
/// passes one is closed. Long generations are never cut: no deadline runs while a response is
/// being produced.
public struct HTTPTimeouts: Sendable, Equatable {
    /// From a request's first byte to the end of its head (slow-header clients).
    public var headerRead: Duration
    /// From the end of a request's head to the end of its body.
    public var bodyRead: Duration
    /// From the connection's start, or the end of its last response, to the next request's first byte.
    public var keepAlive: Duration

    public init(headerRead: Duration = .seconds(10), bodyRead: Duration = .seconds(30), keepAlive: Duration = .seconds(30)) {
        self.headerRead = headerRead
        self.bodyRead = bodyRead
        self.keepAlive = keepAlive
    }
}

/// One connection's deadline, from what it has read and written: pure, so that the channel
/// handler only feeds it events and closes the connection when ``hasExpired(at:)`` says so.
///
/// A request is read in two parts (head, body); responses are counted, since a client may send
/// its next request before the last response ended (pipelining).
struct ConnectionDeadlines {
    private enum Reading {
        case nothing
        case head(since: ContinuousClock.Instant)
        case body(since: ContinuousClock.Instant)
    }

    let timeouts: HTTPTimeouts
    private var reading: Reading = .nothing
    /// Requests whose head was read and whose response has not ended.
    private var responsesPending = 0
    /// Bytes of a next request came while a response was due: its head's deadline starts once
    /// the responses have ended (stray bytes must not cut a long generation short).
    private var bytesWaiting = false
    private var idleSince: ContinuousClock.Instant

    init(timeouts: HTTPTimeouts, now: ContinuousClock.Instant) {
        self.timeouts = timeouts
        idleSince = now
    }

    /// When the connection is closed unless something happens first; `nil` while only responses are due.
    var deadline: ContinuousClock.Instant? {
        switch reading {
        case .head(let since): since + timeouts.headerRead
        case .body(let since): since + timeouts.bodyRead
        case .nothing: responsesPending == 0 ? idleSince + timeouts.keepAlive : nil
        }
    }

    func hasExpired(at now: ContinuousClock.Instant) -> Bool { deadline.map { now >= $0 } ?? false }

    /// Bytes came in: the first ones of a request start its header deadline.
    mutating func bytesArrived(at now: ContinuousClock.Instant) {
        guard case .nothing = reading else { return }
        if responsesPending > 0 {
            bytesWaiting = true
        } else {
            reading = .head(since: now)
        }
    }

    mutating func headRead(at now: ContinuousClock.Instant) {
        responsesPending += 1
        bytesWaiting = false
        reading = .body(since: now)
    }

    mutating func bodyEnded(at now: ContinuousClock.Instant) {
        reading = .nothing
        if responsesPending == 0 { idleSince = now }
    }

    mutating func responseEnded(at now: ContinuousClock.Instant) {
        responsesPending = max(0, responsesPending - 1)
        guard responsesPending == 0 else { return }
        idleSince = now
        if bytesWaiting, case .nothing = reading {
            bytesWaiting = false
            reading = .head(since: now)
        }
    }
}
