import AsyncAlgorithms
import Foundation
public import FrontEnd
public import Hummingbird
import Logging
public import Messages
import NIOCore
import NIOHTTP1
import OpenAIAPI
import ServiceLifecycle
import Synchronization
import UnixSignals

/// Settings of the HTTP side.
public struct APIServerConfiguration: Sendable {
    public let host: String
    public let port: Int
    /// Bearer token demanded on every route but `/health`, `/version` and `/metrics`; `nil` lets everyone in.
    public let apiKey: String?
    /// Bearer token of the elastic EP routes in place of ``apiKey``, when set.
    public let adminAPIKey: String?
    public let maxBodyBytes: Int
    public let timeouts: HTTPTimeouts
    /// How long requests in flight may go on after SIGTERM or SIGINT before they are stopped.
    public let shutdownTimeout: Duration
    /// Serves the elastic EP routes when set.
    public let scaling: (any ElasticScaling)?

    public init(host: String, port: Int, apiKey: String?, adminAPIKey: String? = nil, maxBodyBytes: Int = 4 << 20,
                timeouts: HTTPTimeouts = HTTPTimeouts(), shutdownTimeout: Duration = .seconds(30),
                scaling: (any ElasticScaling)? = nil) {
        self.host = host
        self.port = port
        self.apiKey = apiKey
        self.adminAPIKey = adminAPIKey
        self.maxBodyBytes = maxBodyBytes
        self.timeouts = timeouts
        self.shutdownTimeout = shutdownTimeout
        self.scaling = scaling
    }
}

/// The OpenAI-compatible HTTP server: routes, authentication and error bodies, over a ``FrontEnd``.
public enum APIServer {
    public static let version = "0.2.0"

    /// Builds the application; `onListening` receives the bound port (useful with port 0).
    ///
    /// Routes, and the key each needs: `/health`, `/version` and `/metrics` are open (as in
    /// vLLM); every other route needs ``APIServerConfiguration/apiKey`` when set, and the elastic
    /// routes ``APIServerConfiguration/adminAPIKey`` instead when that is set. A route that does
    /// not exist answers 404 whatever the key.
    public static func application(frontEnd: FrontEnd, configuration: APIServerConfiguration,
                                   onListening: @escaping @Sendable (Int) -> Void) -> some ApplicationProtocol {
        let router = Router(context: ServerRequestContext.self)
        router.add(middleware: OpenAIErrorMiddleware(metrics: frontEnd.metrics, maxBodyBytes: configuration.maxBodyBytes))
        let limit = configuration.maxBodyBytes

        router.get("health") { _, _ -> Response in
            if let reason = frontEnd.engine.failureReason { throw APIError.unavailable("The engine stopped: \(reason)") }
            return Response(status: .ok)
        }
        router.get("version") { _, _ -> Response in
            json(.object([("version", .string(version))]))
        }
        router.get("metrics") { _, _ -> Response in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                     body: ResponseBody(byteBuffer: ByteBuffer(string: frontEnd.metrics.render(
                        engines: frontEnd.engine.rankStatistics, elastic: configuration.scaling?.status))))
        }

        let api = router.group()
        if let key = configuration.apiKey { api.add(middleware: BearerTokenMiddleware(key: key)) }
        api.get("v1/models") { _, _ -> Response in
            json(.object([("object", "list"), ("data", .array(frontEnd.modelNames.map { name in
                .object([("id", .string(name)), ("object", "model"), ("created", .int(ResponseFormatting.now)),
                         ("owned_by", "flexpert"), ("root", .string(frontEnd.modelNames[0])), ("parent", .null),
                         ("max_model_len", .int(frontEnd.limits.maxModelLength))])
            }))]))
        }
        api.post("v1/completions") { request, context -> Response in
            try await generate(request, context: context, limit: limit, endpoint: CompletionsEndpoint(frontEnd: frontEnd))
        }
        api.post("v1/chat/completions") { request, context -> Response in
            try await generate(request, context: context, limit: limit, endpoint: ChatCompletionsEndpoint(frontEnd: frontEnd))
        }
        api.post("tokenize") { request, _ -> Response in
            var request = request
            return json(try TokenizeEndpoints.tokenize(Data(try await request.collectBody(upTo: limit).readableBytesView), frontEnd: frontEnd))
        }
        api.post("detokenize") { request, _ -> Response in
            var request = request
            return json(try TokenizeEndpoints.detokenize(Data(try await request.collectBody(upTo: limit).readableBytesView), frontEnd: frontEnd))
        }

        if let scaling = configuration.scaling {
            let admin = router.group()
            if let key = configuration.adminAPIKey ?? configuration.apiKey { admin.add(middleware: BearerTokenMiddleware(key: key)) }
            ElasticRoutes.add(to: admin, scaling: scaling)
        }
        return Application(
            router: router,
            server: GuardedHTTP1Channel.builder(timeouts: configuration.timeouts),
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "flexpert"),
            onServerRunning: { channel in onListening(channel.localAddress?.port ?? configuration.port) })
    }

    /// Serves until SIGTERM or SIGINT, then shuts down: admission closes (new requests get 503),
    /// requests in flight get ``APIServerConfiguration/shutdownTimeout`` to finish, the rest are
    /// stopped (their clients get a 503 error), and the listener and connections close.
    public static func serve(frontEnd: FrontEnd, configuration: APIServerConfiguration,
                             onListening: @escaping @Sendable (Int) -> Void) async throws {
        let application = application(frontEnd: frontEnd, configuration: configuration, onListening: onListening)
        let drain = ShutdownDrain(frontEnd: frontEnd, timeout: configuration.shutdownTimeout)
        // Graceful shutdown runs in reverse order: the drain first, then the HTTP server.
        let group = ServiceGroup(configuration: .init(services: [application, drain], gracefulShutdownSignals: [.sigterm, .sigint],
                                                      logger: Logger(label: "flexpert")))
        defer { drain.serverClosed.set() }
        try await group.run()
    }

    static func json(_ value: JSONValue, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "application/json"],
                 body: ResponseBody(byteBuffer: ByteBuffer(string: value.serialized())))
    }

    /// Reads and checks the body, then runs the endpoint's generation.
    private static func generate<Endpoint: GenerationEndpoint>(_ request: Request, context: ServerRequestContext, limit: Int,
                                                               endpoint: Endpoint) async throws -> Response {
        var request = request
        let body = Data(try await request.collectBody(upTo: limit).readableBytesView)
        let client = await context.client()
        let prepared = try await watched(client) { try endpoint.prepare(body) }
        // Refused here, while a status can still say so (a streamed response has sent its 200 by the time it runs).
        try endpoint.checkAdmission()
        return try await respond(streams: endpoint.streams(prepared), client: client) { send in
            try await endpoint.run(prepared, send: send)
        }
    }

    /// Runs a generation. Streamed: server-sent events, `data: [DONE]` last, an error as an event
    /// (the status line is gone by then). Not streamed: one JSON body. Either way a client that
    /// closes its connection cancels the work, which aborts its requests in the engine, and the
    /// connection stays open for the client's next request otherwise.
    private static func respond(streams: Bool, client: ClientConnection?,
                                _ run: @escaping @Sendable ((JSONValue) async throws -> Void) async throws -> Void)
        async throws -> Response {
        if streams {
            return Response(
                status: .ok,
                headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
                body: ResponseBody { writer in
                    // The generation runs apart from the writer, which is not Sendable; events reach it through a
                    // channel whose sends wait for the writer, so a client that reads slowly slows its generation
                    // instead of filling memory.
                    let events = AsyncChannel<String>()
                    async let generation: Void = {
                        defer { events.finish() }
                        do {
                            try await watched(client) {
                                try await run { chunk in await events.send(ServerSentEvents.event(chunk.serialized())) }
                            }
                        } catch let error as APIError {
                            await events.send(ServerSentEvents.event(error.body.serialized()))
                        }
                        await events.send(ServerSentEvents.done)
                    }()
                    for await event in events { try await writer.write(ByteBuffer(string: event)) }
                    try await generation
                    try await writer.finish(nil)
                })
        }
        let result = try await watched(client) {
            let body = Mutex<JSONValue>(.null)
            try await run { value in body.withLock { $0 = value } }
            return body.withLock { $0.serialized() }
        }
        return Response(status: .ok, headers: [.contentType: "application/json"],
                        body: ResponseBody(byteBuffer: ByteBuffer(string: result)))
    }
}

extension GenerationEndpoint {
    func checkAdmission() throws {
        guard frontEnd.isAdmitting else { throw APIError.unavailable("The server is shutting down.") }
    }
}

extension APIServer {
    fileprivate static func watched<Value: Sendable>(_ client: ClientConnection?,
                                                     _ operation: @escaping @Sendable () async throws -> Value) async throws -> Value {
        guard let client else { return try await operation() }
        return try await client.cancellingOnClose(operation)
    }
}

/// An OpenAI generation route: checks a body into a prepared request, then runs it, sending one
/// JSON body or, when streaming, each chunk.
protocol GenerationEndpoint: Sendable {
    associatedtype Prepared: Sendable
    var frontEnd: FrontEnd { get }
    func prepare(_ body: Data) throws -> Prepared
    func streams(_ prepared: Prepared) -> Bool
    func run(_ prepared: Prepared, send: (JSONValue) async throws -> Void) async throws
}

/// Turns every error into OpenAI's error body and counts responses by path and status.
struct OpenAIErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    let metrics: ServingMetrics
    let maxBodyBytes: Int
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
            case .contentTooLarge: .tooLarge(limit: maxBodyBytes)
            case .methodNotAllowed: .methodNotAllowed(request.method.rawValue)
            default: APIError(status: error.status.code, message: error.status.reasonPhrase, type: "invalid_request_error")
            }
            response = APIServer.json(apiError.body, status: .init(code: apiError.status))
        } catch is HTTPParserError {
            // A body the HTTP parser refused (a malformed chunk): the client's fault.
            response = APIServer.json(APIError.invalid("The request body is malformed HTTP.").body, status: .badRequest)
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
