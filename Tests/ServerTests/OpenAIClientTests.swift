import Foundation
import Testing

/// The official `openai` Python package against a real server: completions, chat, streaming and
/// errors. The package comes from PyPI into a virtual environment under `.build`, made once.
struct OpenAIClientTests {
    static let environment = ServerProcess.packageRoot.appendingPathComponent(".build/openai-venv")

    private static func run(_ executable: String, _ arguments: [String], timeout: TimeInterval) throws -> (Int32, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        // A file rather than a pipe: nothing has to drain it while the process runs.
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("flexpert-openai-\(UUID().uuidString).log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: log) }
        let handle = try FileHandle(forWritingTo: log)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(50_000) }
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
        try handle.close()
        let text = try Data(contentsOf: log)
        return (process.terminationStatus, String(decoding: text, as: UTF8.self))
    }

    /// Made once per test process: the tests run in parallel, and two making the same environment
    /// at once break each other's (a static is initialised once, the other caller waits for it).
    private static let preparedPython = Result { try makePythonWithOpenAI() }

    private static func pythonWithOpenAI() throws -> String { try preparedPython.get() }

    private static func makePythonWithOpenAI() throws -> String {
        let python = environment.appendingPathComponent("bin/python").path
        if FileManager.default.fileExists(atPath: python), try run(python, ["-c", "import openai"], timeout: 60).0 == 0 {
            return python
        }
        let (created, creation) = try run("/usr/bin/env", ["python3", "-m", "venv", "--clear", environment.path], timeout: 120)
        guard created == 0 else { throw SetupError(detail: "python3 -m venv failed:\n\(creation)") }
        let (installed, log) = try run(python, ["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "openai"], timeout: 300)
        guard installed == 0 else { throw SetupError(detail: "pip install openai failed (PyPI must be reachable):\n\(log)") }
        return python
    }

    struct SetupError: Error, CustomStringConvertible {
        let detail: String
        var description: String { detail }
    }

    @Test(.timeLimit(.minutes(10))) func theOfficialClientWorks() throws {
        let python = try Self.pythonWithOpenAI()
        let server = try ServerProcess()
        defer { server.stop() }
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("openai_client.py").path
        let (status, output) = try Self.run(python, [script, "http://127.0.0.1:\(server.port)/v1"], timeout: 120)
        #expect(status == 0, "\(output)")
        #expect(output.contains("openai client ok"), "\(output)")
    }

    @Test(.timeLimit(.minutes(10))) func theOfficialClientCallsToolsAndReadsReasoning() throws {
        let python = try Self.pythonWithOpenAI()
        let template = ServerProcess.packageRoot.appendingPathComponent("Tests/Fixtures/chat/templates/qwen3.jinja").path
        let tools = try ServerProcess(["--chat-template", template, "--enable-auto-tool-choice", "--tool-call-parser", "hermes",
                                        "--trust-request-chat-template"])
        defer { tools.stop() }
        let reasoning = try ServerProcess(["--reasoning-parser", "deepseek_r1"])
        defer { reasoning.stop() }
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("openai_tools_client.py").path
        let (status, output) = try Self.run(python, [script, "http://127.0.0.1:\(tools.port)/v1", "http://127.0.0.1:\(reasoning.port)/v1"],
                                            timeout: 180)
        #expect(status == 0, "\(output)")
        #expect(output.contains("openai tools ok"), "\(output)")
    }
}
