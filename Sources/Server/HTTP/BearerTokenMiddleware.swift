import FrontEnd
import Hummingbird
import OpenAIAPI

/// Demands `Authorization: Bearer KEY`, as vLLM's `--api-key` does.
///
/// - Important: Added to a route group, never to the router: a group's middleware runs only
///   for the route that matched, so the decision is made on the route that will run, whatever
///   spelling of its path (`//v1/completions`) the client sent.
struct BearerTokenMiddleware<Context: RequestContext>: RouterMiddleware {
    let expected: [UInt8]

    init(key: String) { expected = Array("Bearer \(key)".utf8) }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let presented = request.headers[.authorization], Self.equal(Array(presented.utf8), expected) else {
            throw APIError.unauthorized
        }
        return try await next(request, context)
    }

    /// Compares in time that depends on the lengths only, so that timing does not reveal how much of a guess is right.
    static func equal(_ lhs: [UInt8], _ rhs: [UInt8]) -> Bool {
        guard lhs.count == rhs.count else { return false }
        var difference: UInt8 = 0
        for index in lhs.indices { difference |= lhs[index] ^ rhs[index] }
        return difference == 0
    }
}
