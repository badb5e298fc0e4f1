import FrontEnd
import NIOCore
import NIOHTTPTypes
import Synchronization

/// Whether an HTTP connection's client is still there, for the handlers of its requests: a
/// generation stops (its requests are aborted) as soon as the client closes or resets the
/// connection, without reading past the request's own body, so that the connection stays
/// usable for the client's next request.
final class ClientConnection: Sendable {
    private struct State {
        var isClosed = false
        var nextWaiter = 0
        var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
    }

    private let state = Mutex(State())

    /// The client closed its side or the connection broke; wakes every waiter.
    func markClosed() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            guard !state.isClosed else { return [] }
            state.isClosed = true
            defer { state.waiters.removeAll() }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Runs `operation`; if the client goes away first, cancels it and throws `CancellationError`.
    func cancellingOnClose<Value: Sendable>(_ operation: @escaping @Sendable () async throws -> Value) async throws -> Value {
        try await withThrowingTaskGroup(of: Value?.self) { group in
            group.addTask { try await operation() }
            group.addTask {
                await self.waitForClose()
                return nil
            }
            defer { group.cancelAll() }
            guard case .some(.some(let value)) = try await group.next() else { throw CancellationError() }
            return value
        }
    }

    /// Returns once the client is gone or the task is cancelled.
    private func waitForClose() async {
        let id = state.withLock { state in
            state.nextWaiter += 1
            return state.nextWaiter
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let resumeNow = state.withLock { state in
                    guard !state.isClosed && !Task.isCancelled else { return true }
                    state.waiters[id] = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.waiters.removeValue(forKey: id) }?.resume()
        }
    }
}

/// Fires ``RequestBytesArrived`` ahead of every read, so that ``ConnectionGuard`` (which sits
/// after the HTTP decoder and sees only whole request parts) knows when a request's first bytes came.
final class RequestBytesSignal: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.fireUserInboundEventTriggered(RequestBytesArrived())
        context.fireChannelRead(data)
    }
}

struct RequestBytesArrived {}

/// Enforces ``HTTPTimeouts`` on one connection and tells its ``ClientConnection`` when the
/// client leaves. Runs on the connection's event loop, which owns its state.
final class ConnectionGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    let client = ClientConnection()
    private var deadlines: ConnectionDeadlines
    private var timer: Scheduled<Void>?
    private var timerDeadline: ContinuousClock.Instant?

    init(timeouts: HTTPTimeouts) {
        deadlines = ConnectionDeadlines(timeouts: timeouts, now: .now)
    }

    func handlerAdded(context: ChannelHandlerContext) { arm(context) }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head: deadlines.headRead(at: .now)
        case .body: break
        case .end: deadlines.bodyEnded(at: .now)
        }
        arm(context)
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) {
            deadlines.responseEnded(at: .now)
            arm(context)
        }
        context.write(data, promise: promise)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is RequestBytesArrived {
            deadlines.bytesArrived(at: .now)
            arm(context)
            return
        }
        if let event = event as? ChannelEvent, case .inputClosed = event { client.markClosed() }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        client.markClosed()
        context.fireChannelInactive()
    }

    /// Keeps one timer, at the earliest deadline; a timer that fires early (the deadline moved
    /// later since) sets the next one.
    private func arm(_ context: ChannelHandlerContext) {
        guard let deadline = deadlines.deadline else { return }
        if let timerDeadline, timerDeadline <= deadline { return }
        timer?.cancel()
        timerDeadline = deadline
        let loop = context.eventLoop.assumeIsolated()
        timer = loop.scheduleTask(in: .nanoseconds(Int64(max(.zero, deadline - .now) / .nanoseconds(1)))) { [self] in
            timer = nil
            timerDeadline = nil
            if deadlines.hasExpired(at: .now) {
                context.close(promise: nil)
            } else {
                arm(context)
            }
        }
    }
}
