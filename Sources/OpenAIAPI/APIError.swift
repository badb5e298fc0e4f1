/// An error as the OpenAI API reports it: an HTTP status and
/// `{"error":{"message","type","param","code"}}`.
public struct APIError: Error, Sendable, CustomStringConvertible {
    public let status: Int
    public let message: String
    public let type: String
    public let param: String?
    public let code: String?

    public init(status: Int, message: String, type: String, param: String? = nil, code: String? = nil) {
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
    }

    public var description: String { "\(status) \(type): \(message)" }

    public var body: JSONValue {
        .object([("error", .object([
            ("message", .string(message)),
            ("type", .string(type)),
            ("param", param.map { .string($0) } ?? .null),
            ("code", code.map { .string($0) } ?? .null),
        ]))])
    }

    public static func invalid(_ message: String, param: String? = nil) -> APIError {
        APIError(status: 400, message: message, type: "invalid_request_error", param: param)
    }

    public static func modelNotFound(_ name: String) -> APIError {
        APIError(status: 404, message: "The model `\(name)` does not exist.", type: "invalid_request_error",
                 param: "model", code: "model_not_found")
    }

    public static let unauthorized = APIError(status: 401, message: "Incorrect API key provided.",
                                              type: "invalid_request_error", code: "invalid_api_key")

    public static func tooLarge(limit: Int) -> APIError {
        APIError(status: 413, message: "The request body is larger than \(limit) bytes.", type: "invalid_request_error")
    }

    public static let notFound = APIError(status: 404, message: "Not Found", type: "invalid_request_error")

    public static func methodNotAllowed(_ method: String) -> APIError {
        APIError(status: 405, message: "Method \(method) is not allowed here.", type: "invalid_request_error")
    }

    public static func unavailable(_ message: String) -> APIError {
        APIError(status: 503, message: message, type: "service_unavailable_error")
    }

    public static func server(_ message: String) -> APIError {
        APIError(status: 500, message: message, type: "server_error")
    }
}
