public import NIOCore
import NIOHTTP1
import NIOPosix

/// One HTTP/1.1 request on its own connection, with the response body delivered piece by piece
/// as it arrives (what streaming clients and the benchmark need), then the connection closed.
public struct HTTPExchange: Sendable {
    public let host: String
    public let port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// `host:port` or `http://host:port[/…]`.
    public init(url: String) throws {
        var rest = Substring(url)
        if rest.hasPrefix("http://") { rest = rest.dropFirst(7) }
        if rest.hasPrefix("https://") { throw HTTPExchangeError.unsupported("https is not supported; use http://") }
        let authority = rest.prefix { $0 != "/" }
        let parts = authority.split(separator: ":")
        guard parts.count == 2, let port = Int(parts[1]), (1...65535).contains(port) else {
            throw HTTPExchangeError.unsupported("'\(url)' is not http://HOST:PORT")
        }
        self.init(host: String(parts[0]), port: port)
    }

    public struct Head: Sendable {
        public let status: Int
        public let headers: [(String, String)]
    }

    /// Sends the request; `onHead` gets the status line and headers, `onBody` each body piece.
    public func send(method: String, path: String, headers: [(String, String)] = [], body: [UInt8]? = nil,
                     onHead: (Head) async throws -> Void = { _ in },
                     onBody: (ByteBuffer) async throws -> Void) async throws {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            .connect(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(wrappingChannelSynchronously: channel)
                }
            }
        try await channel.executeThenClose { inbound, outbound in
            var fields = HTTPHeaders(headers)
            fields.replaceOrAdd(name: "Host", value: "\(host):\(port)")
            fields.replaceOrAdd(name: "Connection", value: "close")
            if let body {
                fields.replaceOrAdd(name: "Content-Length", value: String(body.count))
                if !fields.contains(name: "Content-Type") { fields.add(name: "Content-Type", value: "application/json") }
            }
            // One write for the whole request: a server that answers and closes as soon as it has
            // the body must not find the client still writing its end.
            var parts: [HTTPClientRequestPart] = [
                .head(HTTPRequestHead(version: .http1_1, method: HTTPMethod(rawValue: method), uri: path, headers: fields)),
            ]
            if let body { parts.append(.body(.byteBuffer(ByteBuffer(bytes: body)))) }
            parts.append(.end(nil))
            try await outbound.write(contentsOf: parts)
            for try await part in inbound {
                switch part {
                case .head(let head):
                    try await onHead(Head(status: Int(head.status.code), headers: head.headers.map { ($0.name, $0.value) }))
                case .body(let buffer):
                    try await onBody(buffer)
                case .end:
                    return
                }
            }
            throw HTTPExchangeError.closedEarly
        }
    }

    /// Sends the request and collects the whole response.
    public func fetch(method: String, path: String, headers: [(String, String)] = [],
                      body: [UInt8]? = nil) async throws -> (status: Int, body: String) {
        var status = 0
        var collected: [UInt8] = []
        try await send(method: method, path: path, headers: headers, body: body, onHead: { status = $0.status }) { buffer in
            collected += buffer.readableBytesView
        }
        return (status, String(decoding: collected, as: UTF8.self))
    }
}

public enum HTTPExchangeError: Error, CustomStringConvertible {
    case unsupported(String)
    case closedEarly

    public var description: String {
        switch self {
        case .unsupported(let detail): detail
        case .closedEarly: "the server closed the connection before the response ended"
        }
    }
}
