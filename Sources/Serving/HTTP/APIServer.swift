import Foundation
public import Hummingbird
import NIOCore

/// Settings of the HTTP side.
public struct APIServerConfiguration: Sendable {
    public let host: String
    public let port: Int
    /// Bearer token demanded on `/v1/*`; `nil` lets everyone in.
    public let apiKey: String?
    public let maxBodyBytes: Int
    /// Serves the elastic EP routes when set.
    public let scaling: (any ElasticScaling)?

    public init(host: String, port: Int, apiKey: String?, maxBodyBytes: Int = 4 << 20, scaling: (any ElasticScaling)? = nil) {
        self.host = host
        self.port = port
        self.apiKey = apiKey
        self.maxBodyBytes = maxBodyBytes
        self.scaling = scaling
    }
}

/// The OpenAI-compatible HTTP server: routes, authentication and error bodies, over a ``FrontEnd``.
public enum APIServer {
    public static let version = "0.2.0"

    /// Builds the application; `onListening` receives the bound port (useful with port 0).
    public static func application(frontEnd: FrontEnd, configuration: APIServerConfiguration,
                                   onListening: @escaping @Sendable (Int) -> Void) -> some ApplicationProtocol {
        let router = Router()
        router.add(middleware: OpenAIErrorMiddleware(metrics: frontEnd.metrics))
        if let key = configuration.apiKey { router.add(middleware: BearerTokenMiddleware(key: key)) }
        let limit = configuration.maxBodyBytes

        router.get("health") { _, _ -> Response in
            if let reason = frontEnd.engine.failureReason { throw APIError.unavailable("The engine stopped: \(reason)") }
            return Response(status: .ok)
        }
        router.get("version") { _, _ -> Response in
            json(.object([("version", .string(version))]))
        }
        router.get("v1/models") { _, _ -> Response in
            json(.object([("object", "list"), ("data", .array(frontEnd.modelNames.map { name in
                .object([("id", .string(name)), ("object", "model"), ("created", .int(ResponseFormatting.now)),
                         ("owned_by", "flexpert"), ("root", .string(frontEnd.modelNames[0])), ("parent", .null),
                         ("max_model_len", .int(frontEnd.limits.maxModelLength))])
            }))]))
        }
        router.get("metrics") { _, _ -> Response in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                     body: ResponseBody(byteBuffer: ByteBuffer(string: frontEnd.metrics.render(engines: frontEnd.engine.rankStatistics))))
        }
        if let scaling = configuration.scaling { ElasticRoutes.add(to: router, scaling: scaling) }
        router.post("v1/completions") { request, _ -> Response in
            try await generate(request, limit: limit, endpoint: CompletionsEndpoint(frontEnd: frontEnd))
        }
        router.post("v1/chat/completions") { request, _ -> Response in
            try await generate(request, limit: limit, endpoint: ChatCompletionsEndpoint(frontEnd: frontEnd))
        }
        return Application(
            router: router,
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "flexpert"),
            onServerRunning: { channel in onListening(channel.localAddress?.port ?? configuration.port) })
    }

    /// Serves until SIGTERM or SIGINT, then shuts down gracefully.
    public static func serve(frontEnd: FrontEnd, configuration: APIServerConfiguration,
                             onListening: @escaping @Sendable (Int) -> Void) async throws {
        try await application(frontEnd: frontEnd, configuration: configuration, onListening: onListening).runService()
    }

    static func json(_ value: JSONValue, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "application/json"],
                 body: ResponseBody(byteBuffer: ByteBuffer(string: value.serialized())))
    }

    /// Reads and checks the body, then runs the endpoint's generation.
    private static func generate<Endpoint: GenerationEndpoint>(_ request: Request, limit: Int,
                                                               endpoint: Endpoint) async throws -> Response {
        var request = request
        let body = try await request.collectBody(upTo: limit)
        let prepared = try endpoint.prepare(Data(body.readableBytesView))
        return try await respond(request, streams: endpoint.streams(prepared)) { send in
            try await endpoint.run(prepared, send: send)
        }
    }

    /// Runs a generation. Streamed: server-sent events, `data: [DONE]` last, an error as an event
    /// (the status line is gone by then). Not streamed: one JSON body. Either way a client that
    /// closes its connection cancels the work, which aborts its requests in the engine.
    private static func respond(_ request: Request, streams: Bool,
                                _ run: @escaping @Sendable ((JSONValue) async throws -> Void) async throws -> Void)
        async throws -> Response {
        if streams {
            return Response(
                status: .ok,
                headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
                body: ResponseBody { writer in
                    try await request.body.consumeWithCancellationOnInboundClose { _ in
                        do {
                            try await run { chunk in try await writer.write(ByteBuffer(string: "data: \(chunk.serialized())\n\n")) }
                        } catch let error as APIError {
                            try await writer.write(ByteBuffer(string: "data: \(error.body.serialized())\n\n"))
                        }
                        try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
                    }
                    try await writer.finish(nil)
                })
        }
        let result = try await request.body.consumeWithCancellationOnInboundClose { _ in
            var body: JSONValue = .null
            try await run { body = $0 }
            return body.serialized()
        }
        return Response(status: .ok, headers: [.contentType: "application/json"],
                        body: ResponseBody(byteBuffer: ByteBuffer(string: result)))
    }
}

/// An OpenAI generation route: checks a body into a prepared request, then runs it, sending one
/// JSON body or, when streaming, each chunk.
protocol GenerationEndpoint: Sendable {
    associatedtype Prepared: Sendable
    func prepare(_ body: Data) throws -> Prepared
    func streams(_ prepared: Prepared) -> Bool
    func run(_ prepared: Prepared, send: (JSONValue) async throws -> Void) async throws
}

/// Turns every error into OpenAI's error body and counts responses by path and status.
struct OpenAIErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    let metrics: ServingMetrics
    static var knownPaths: Set<String> {
        ["/health", "/version", "/v1/models", "/metrics", "/v1/completions", "/v1/chat/completions", "/scale_elastic_ep",
         "/is_scaling_elastic_ep", "/elastic_ep/status"]
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let path = Self.knownPaths.contains(request.uri.path) ? request.uri.path : "other"
        let response: Response
        do {
            response = try await next(request, context)
        } catch let error as APIError {
            response = APIServer.json(error.body, status: .init(code: error.status))
        } catch let error as any HTTPResponseError {
            let apiError: APIError = switch error.status {
            case .notFound: .notFound
            case .contentTooLarge: .tooLarge(limit: 0)
            case .methodNotAllowed: .methodNotAllowed(request.method.rawValue)
            default: APIError(status: error.status.code, message: error.status.reasonPhrase, type: "invalid_request_error")
            }
            response = APIServer.json(apiError.body, status: .init(code: apiError.status))
        } catch is CancellationError {
            response = APIServer.json(APIError(status: 499, message: "The client closed the request.", type: "cancelled").body,
                                      status: .init(code: 499))
        } catch {
            response = APIServer.json(APIError.server("\(error)").body, status: .internalServerError)
        }
        metrics.responded(path: path, status: response.status.code)
        return response
    }
}

/// Demands `Authorization: Bearer KEY` on the OpenAI routes, as vLLM's `--api-key` does.
struct BearerTokenMiddleware<Context: RequestContext>: RouterMiddleware {
    let key: String

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard request.uri.path.hasPrefix("/v1") else { return try await next(request, context) }
        guard request.headers[.authorization] == "Bearer \(key)" else { throw APIError.unauthorized }
        return try await next(request, context)
    }
}
