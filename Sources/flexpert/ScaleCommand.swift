import ArgumentParser
import BenchServe
import Compute
import Foundation

/// `flexpert scale`: asks a running server (started with --enable-elastic-ep) to grow or shrink
/// its ranks, waits until it serves at the new size, and prints the timings it reports.
struct ScaleCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scale", abstract: "Scale a running server's expert-parallel ranks (POST /scale_elastic_ep).")

    @Option(help: "The server, http://HOST:PORT.")
    var url = "http://127.0.0.1:8000"

    @Option(name: .customLong("new-data-parallel-size"), help: "The number of ranks to serve with.")
    var size: Int

    @Option(name: .customLong("api-key"), help: "Bearer token (default: $FLEXPERT_API_KEY).")
    var apiKey: String?

    func validate() throws {
        guard size >= 1 else { throw ValidationError("--new-data-parallel-size must be at least 1") }
    }

    func run() async throws {
        let server = try HTTPExchange(url: url)
        var headers = [("Content-Type", "application/json")]
        if let key = apiKey ?? ProcessInfo.processInfo.environment["FLEXPERT_API_KEY"] {
            headers.append(("Authorization", "Bearer \(key)"))
        }
        let started = ContinuousClock.now
        let (status, body) = try await server.fetch(method: "POST", path: "/scale_elastic_ep", headers: headers,
                                                    body: Array(#"{"new_data_parallel_size":\#(size)}"#.utf8))
        let elapsed = ContinuousClock.now - started
        let object = (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any] ?? [:]
        guard status == 200 else {
            let message = ((object["error"] as? [String: Any])?["message"] as? String) ?? body
            throw ScaleError(description: "the server answered \(status): \(message)")
        }
        print("\(object["message"] as? String ?? "scaled") (operation \(object["operation_id"] as? String ?? "?"))")
        for (name, value) in ((object["timings"] as? [String: Any]) ?? [:]).sorted(by: { $0.key < $1.key }) {
            print("  \(name): \(value)")
        }
        print(String(format: "  request answered after %.3f s", elapsed.seconds))
    }
}

struct ScaleError: Error, CustomStringConvertible {
    let description: String
}
