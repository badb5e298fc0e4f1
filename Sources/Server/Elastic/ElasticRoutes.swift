import Foundation
import FrontEnd
import Hummingbird
import Messages
import NIOCore
import OpenAIAPI

/// vLLM's elastic EP routes: `POST /scale_elastic_ep`, `POST /is_scaling_elastic_ep`, and
/// Flexpert's `GET /elastic_ep/status`.
enum ElasticRoutes {
    static func add(to router: RouterGroup<ServerRequestContext>, scaling: any ElasticScaling) {
        router.post("scale_elastic_ep") { request, _ -> Response in
            var request = request
            let limit = 64 << 10
            let body: ByteBuffer
            do {
                body = try await request.collectBody(upTo: limit)
            } catch let error as HTTPError where error.status == .contentTooLarge {
                throw APIError.tooLarge(limit: limit)
            }
            struct Body: Decodable { let new_data_parallel_size: Int }
            guard let size = (try? JSONDecoder().decode(Body.self, from: Data(body.readableBytesView)))?.new_data_parallel_size,
                  size >= 1 else {
                throw APIError.invalid("new_data_parallel_size must be a positive integer.", param: "new_data_parallel_size")
            }
            switch await scaling.scale(to: size) {
            case .scaled(let id, let message, let timings):
                return APIServer.json(.object([
                    ("message", .string(message)), ("operation_id", .string(id)),
                    ("timings", .object(timings.sorted { $0.key < $1.key }.map { ($0.key, .number($0.value)) })),
                ]))
            case .invalid(let message): throw APIError.invalid(message, param: "new_data_parallel_size")
            case .busy(let message): throw APIError(status: 409, message: message, type: "conflict_error")
            case .failed(let id, let reason):
                throw APIError(status: 500, message: "Scaling operation \(id) failed and was rolled back: \(reason)",
                               type: "server_error")
            }
        }
        router.post("is_scaling_elastic_ep") { _, _ -> Response in
            APIServer.json(.object([("is_scaling_elastic_ep", .bool(scaling.status.isScaling))]))
        }
        router.get("elastic_ep/status") { _, _ -> Response in
            APIServer.json(scaling.status.json)
        }
    }
}
