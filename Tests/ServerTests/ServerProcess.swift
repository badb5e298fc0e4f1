import BenchServe
import Foundation
import NIOCore
import OpenAIAPI
import Testing

/// A real `flexpert serve` process on a free loopback port, stopped by `stop()` (SIGTERM, then
/// SIGKILL after a deadline). The executable is the one `swift test` builds beside the test bundle.
final class ServerProcess: @unchecked Sendable {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let model = packageRoot.appendingPathComponent("Tests/Fixtures/qwen3_moe").path
    static let executable = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        .appendingPathComponent("flexpert")

    let process = Process()
    let port: Int
    /// What the server printed up to its "listening" line.
    let startup: String
    private let errorLog: URL

    /// Starts `flexpert serve` and returns once it listens. With several ranks, `onCoordinator`
    /// gets the coordinator's address as soon as the server prints it (to start ranks by hand).
    init(_ arguments: [String] = [], environment: [String: String] = [:],
         onCoordinator: ((String) throws -> Void)? = nil) throws {
        process.executableURL = Self.executable
        // Connection deadlines long enough for a test process whose tasks wait for threads: a test
        // blocked behind a busy pool may connect and write its request many seconds apart.
        // Tests of the deadlines set their own.
        let deadlines = ["--timeout-keep-alive", "--timeout-header-read", "--timeout-body-read"]
            .filter { !arguments.contains($0) }.flatMap { [$0, "600"] }
        process.arguments = ["serve", "--host", "127.0.0.1", "--port", "0", "--kv-cache-memory-bytes", "64MiB"]
            + (arguments.contains("--model") ? [] : ["--model", Self.model]) + deadlines + arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let output = Pipe()
        process.standardOutput = output
        errorLog = FileManager.default.temporaryDirectory.appendingPathComponent("flexpert-serve-\(UUID().uuidString).log")
        _ = FileManager.default.createFile(atPath: errorLog.path, contents: nil)
        process.standardError = try FileHandle(forWritingTo: errorLog)
        try process.run()
        // The port line comes first; the pipe is then drained in the background so the server never blocks on it.
        var text = ""
        let deadline = Date().addingTimeInterval(120)
        var found: Int?
        var coordinatorSeen = false
        while found == nil && Date() < deadline && process.isRunning {
            let data = output.fileHandleForReading.availableData
            if data.isEmpty { break }
            text += String(decoding: data, as: UTF8.self)
            if !coordinatorSeen, let onCoordinator, let range = text.range(of: "coordinator on ") {
                coordinatorSeen = true
                do {
                    try onCoordinator(String(text[range.upperBound...].prefix { $0 != "," && !$0.isWhitespace }))
                } catch {
                    process.terminate()
                    throw error
                }
            }
            if let range = text.range(of: "listening on http://127.0.0.1:") {
                found = Int(text[range.upperBound...].prefix { $0.isNumber })
            }
        }
        guard let found else {
            process.terminate()
            throw ServerStartError(output: text + (try String(contentsOf: errorLog, encoding: .utf8)))
        }
        port = found
        startup = text
        let handle = output.fileHandleForReading
        Thread.detachNewThread { while !handle.availableData.isEmpty {} }
    }

    var exchange: HTTPExchange { HTTPExchange(host: "127.0.0.1", port: port) }

    /// What the server and its ranks have written to standard error so far.
    var log: String { (try? String(contentsOf: errorLog, encoding: .utf8)) ?? "" }

    func stop() {
        guard process.isRunning else { return }
        process.terminate()
        let deadline = Date().addingTimeInterval(20)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        try? FileManager.default.removeItem(at: errorLog)
    }

    func post(_ path: String, _ body: String, headers: [(String, String)] = []) async throws -> (status: Int, json: [String: Any]) {
        let (status, text) = try await exchange.fetch(method: "POST", path: path, headers: headers, body: Array(body.utf8))
        let object = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] ?? ["raw": text]
        return (status, object)
    }

    func get(_ path: String, headers: [(String, String)] = []) async throws -> (status: Int, body: String) {
        try await exchange.fetch(method: "GET", path: path, headers: headers)
    }

    /// The `data:` payloads of a streamed response, `[DONE]` included.
    func stream(_ path: String, _ body: String) async throws -> [String] {
        var parser = ServerSentEventParser()
        var events: [String] = []
        try await exchange.send(method: "POST", path: path, body: Array(body.utf8)) { buffer in
            events += parser.feed(buffer.readableBytesView)
        }
        return events
    }

    /// A metric's value from `/metrics` (the first line starting with `prefix`).
    func metric(_ prefix: String) async throws -> Double? {
        let (_, text) = try await get("/metrics")
        for line in text.split(separator: "\n") where line.hasPrefix(prefix) {
            return Double(line.split(separator: " ").last ?? "")
        }
        return nil
    }
}

struct ServerStartError: Error, CustomStringConvertible {
    let output: String
    var description: String { "flexpert serve did not start:\n\(output)" }
}

func jsonObject(_ text: String) -> [String: Any] {
    (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] ?? [:]
}
