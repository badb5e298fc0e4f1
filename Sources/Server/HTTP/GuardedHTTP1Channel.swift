import FrontEnd
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore

/// Hummingbird's HTTP/1.1 channel with a ``ConnectionGuard`` on every connection: deadlines
/// for slow and idle clients, and the ``ClientConnection`` request handlers watch.
struct GuardedHTTP1Channel: ServerChildChannel {
    typealias Value = HTTP1Channel.Value

    let http1: HTTP1Channel

    init(responder: @escaping HTTPChannelHandler.Responder, timeouts: HTTPTimeouts) {
        http1 = HTTP1Channel(responder: responder, configuration: .init(additionalChannelHandlers: [ConnectionGuard(timeouts: timeouts)]))
    }

    static func builder(timeouts: HTTPTimeouts) -> HTTPServerBuilder {
        HTTPServerBuilder { responder in GuardedHTTP1Channel(responder: responder, timeouts: timeouts) }
    }

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        do {
            try channel.pipeline.syncOperations.addHandler(RequestBytesSignal())
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }
        return http1.setup(channel: channel, logger: logger)
    }

    func handle(value: Value, logger: Logger) async {
        await http1.handle(value: value, logger: logger)
    }
}

/// The request context of Flexpert's routes: Hummingbird's basics plus the connection, so that
/// a generation can watch for its client leaving.
struct ServerRequestContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    let channel: any Channel

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }

    /// The connection's client watch; `nil` on a channel without a ``ConnectionGuard``.
    func client() async -> ClientConnection? {
        let channel = channel
        return try? await channel.eventLoop.submit {
            try channel.pipeline.syncOperations.handler(type: ConnectionGuard.self).client
        }.get()
    }
}
