import BenchServe
import Foundation
import Testing

/// `flexpert serve --data-parallel-size N`: real engine processes on loopback, the experts split
/// over them. Greedy outputs must not depend on N.
struct ExpertParallelServingTests {
    /// A 12-expert config (`Tests/Fixtures/ep12`, seeded dummy weights) so that 1, 2, 3 and 4 ranks all divide.
    static let twelveExperts = ServerProcess.packageRoot.appendingPathComponent("Tests/Fixtures/ep12").path
    /// DeepSeek-V3's architecture with 12 routed experts in 4 groups (`Tests/Fixtures/ds12`, seeded dummy weights).
    static let deepSeekTwelveExperts = ServerProcess.packageRoot.appendingPathComponent("Tests/Fixtures/ds12").path
    /// GPT-OSS's architecture with 12 experts (`Tests/Fixtures/go12`, seeded dummy weights): sinks, sliding layers, biased experts.
    static let gptOssTwelveExperts = ServerProcess.packageRoot.appendingPathComponent("Tests/Fixtures/go12").path

    static let bodies = (0..<8).map { index in
        let prompt = (0..<(2 + index * 3)).map { ($0 * 53 + index * 211 + 7) % 1990 }
        return #"{"prompt":\#(prompt),"max_tokens":\#(3 + index % 5),"temperature":0,"logprobs":0,"return_tokens_as_token_ids":true}"#
    }

    static func tokens(_ server: ServerProcess) async throws -> [[Int]] {
        try await withThrowingTaskGroup(of: (Int, [Int]).self) { group in
            for (index, body) in bodies.enumerated() {
                group.addTask {
                    let (status, json) = try await server.post("/v1/completions", body)
                    guard status == 200 else { throw ServerStartError(output: "request \(index): \(status) \(json)") }
                    let tokens = ((json["choices"] as? [[String: Any]])?.first?["logprobs"] as? [String: Any])?["tokens"] as? [String]
                    return (index, (tokens ?? []).compactMap { Int($0.dropFirst("token_id:".count)) })
                }
            }
            let results = try await group.reduce(into: [Int: [Int]]()) { $0[$1.0] = $1.1 }
            return (0..<bodies.count).map { results[$0] ?? [] }
        }
    }

    @Test(.timeLimit(.minutes(5)), arguments: [(twelveExperts, [2, 3, 4]), (deepSeekTwelveExperts, [2, 4]),
                                                   (gptOssTwelveExperts, [2, 4])])
    func outputsDoNotDependOnTheNumberOfRanks(model: String, sizes: [Int]) async throws {
        let arguments = ["--model", model, "--load-format", "dummy", "--tokenizer", ServerProcess.model]
        let name = URL(fileURLWithPath: model).lastPathComponent
        let single = try ServerProcess(arguments)
        let reference = try await Self.tokens(single)
        single.stop()
        #expect(reference.enumerated().allSatisfy { $1.count == 3 + $0 % 5 })
        for ranks in sizes {
            let server = try ServerProcess(arguments + ["--data-parallel-size", "\(ranks)"])
            defer { server.stop() }
            #expect(try await Self.tokens(server) == reference, "\(ranks) ranks")
            // Ranks report their figures when they go idle; every one exchanged tokens and generated some.
            let deadline = Date().addingTimeInterval(10)
            var bytes = 0.0, tokens = 0.0
            while Date() < deadline {
                bytes = try await server.metric("flexpert:all_to_all_bytes_total{model_name=\"\(name)\",rank=\"\(ranks - 1)\"}") ?? 0
                tokens = try await server.metric("flexpert:engine_generation_tokens_total{model_name=\"\(name)\",rank=\"0\"}") ?? 0
                if bytes > 0 && tokens > 0 { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(bytes > 0 && tokens > 0, "\(ranks) ranks: bytes \(bytes), tokens \(tokens)")
        }
    }

    /// Redundant copies of experts change where tokens go (replicas taken in turn by position), not what they compute.
    @Test(.timeLimit(.minutes(5))) func redundantExpertsChangeNothingInTheOutputs() async throws {
        let arguments = ["--model", Self.twelveExperts, "--load-format", "dummy", "--tokenizer", ServerProcess.model]
        let single = try ServerProcess(arguments)
        let reference = try await Self.tokens(single)
        single.stop()
        for (ranks, redundant) in [(2, 4), (3, 3)] {
            let server = try ServerProcess(arguments + ["--data-parallel-size", "\(ranks)", "--enable-eplb",
                                                        "--num-redundant-experts", "\(redundant)", "--eplb-log-interval", "4"])
            defer { server.stop() }
            #expect(try await Self.tokens(server) == reference, "\(ranks) ranks, \(redundant) redundant experts")
            // The load window was measured: random routing over a few requests is never perfectly even.
            let deadline = Date().addingTimeInterval(10)
            var balance = 1.0
            while balance == 1 && Date() < deadline {
                balance = try await server.metric("flexpert:expert_balancedness{model_name=\"ep12\",rank=\"0\"}") ?? 1
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(balance > 0 && balance < 1, "balancedness \(balance)")
        }
    }

    /// EPLB rebalancing every other step moves expert weights between the rank processes many
    /// times while the requests run; every request's tokens stay those of one rank.
    @Test(.timeLimit(.minutes(5))) func movingExpertsWhileServingChangesNoOutput() async throws {
        let arguments = ["--model", Self.twelveExperts, "--load-format", "dummy", "--tokenizer", ServerProcess.model]
        let single = try ServerProcess(arguments)
        let reference = try await Self.tokens(single)
        single.stop()
        let server = try ServerProcess(arguments + ["--data-parallel-size", "3", "--enable-eplb", "--num-redundant-experts", "3",
                                                    "--eplb-step-interval", "2", "--eplb-window-size", "4"])
        defer { server.stop() }
        for round in 0..<3 { #expect(try await Self.tokens(server) == reference, "round \(round)") }
        let deadline = Date().addingTimeInterval(10)
        var rearrangements = 0.0, received = 0.0
        while Date() < deadline {
            rearrangements = try await server.metric("flexpert:eplb_rearrangements_total{model_name=\"ep12\",rank=\"0\"}") ?? 0
            received = 0
            for rank in 0..<3 {
                received += try await server.metric("flexpert:eplb_experts_received_total{model_name=\"ep12\",rank=\"\(rank)\"}") ?? 0
            }
            if rearrangements >= 5 && received > 0 { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(rearrangements >= 5 && received > 0, "\(rearrangements) rearrangements, \(received) experts received")
    }

    @Test(.timeLimit(.minutes(3))) func theCheckpointFixtureOnTwoRanksMatchesOneRank() async throws {
        let single = try ServerProcess()
        let reference = try await Self.tokens(single)
        single.stop()
        let server = try ServerProcess(["--data-parallel-size", "2"])
        defer { server.stop() }
        #expect(try await Self.tokens(server) == reference)
    }

    @Test func unevenRankCountsAreRefusedWithTheSizesThatWork() throws {
        let process = Process()
        process.executableURL = ServerProcess.executable
        process.arguments = ["serve", "--model", ServerProcess.model, "--port", "0", "--data-parallel-size", "3"]
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus != 0)
        #expect(text.contains("rank counts that work: 1, 2, 4, 8"), "\(text)")
    }

    /// A rank started by hand joins with the right token; one with a wrong token is refused.
    @Test(.timeLimit(.minutes(3))) func ranksJoinByHandOnlyWithTheToken() async throws {
        let engines = Locked<[Process]>([])
        defer { for process in engines.value where process.isRunning { process.terminate() } }
        let server = try ServerProcess(["--data-parallel-size", "2", "--data-parallel-size-local", "1", "--join-token", "sesame"]) { address in
            let intruder = Process()
            intruder.executableURL = ServerProcess.executable
            intruder.arguments = ["engine", "--coordinator", address, "--join-token", "wrong"]
            let errors = Pipe()
            intruder.standardError = errors
            try intruder.run()
            let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            intruder.waitUntilExit()
            guard intruder.terminationStatus != 0, text.contains("refused") else {
                throw ServerStartError(output: "a wrong token was not refused: \(intruder.terminationStatus) \(text)")
            }
            let member = Process()
            member.executableURL = ServerProcess.executable
            member.arguments = ["engine", "--coordinator", address, "--join-token", "sesame"]
            member.standardError = FileHandle.nullDevice
            try member.run()
            engines.value.append(member)
        }
        defer { server.stop() }
        let (status, _) = try await server.post("/v1/completions", #"{"prompt": "hi", "max_tokens": 4}"#)
        #expect(status == 200)
    }

    /// A rank that dies turns /health to 503 and fails what it held; its peer's exchanges fail at
    /// once (the connection is gone), so nothing hangs.
    @Test(.timeLimit(.minutes(3))) func aDeadRankFailsItsRequestsAndHealth() async throws {
        let server = try ServerProcess(["--data-parallel-size", "2", "--collective-timeout", "5"])
        defer { server.stop() }
        #expect(try await server.get("/health").status == 200)
        let children = try Self.children(of: server.process.processIdentifier)
        try #require(children.count == 2, "\(children)")
        defer { for child in children { kill(child, SIGCONT) } }
        // The tiny model can finish 16 × 400 tokens between two polls of a fast machine, so both
        // ranks are frozen once tokens flow and the kill happens only if the request is still
        // unfinished then (6,400 tokens not yet counted once what the ranks sent before freezing
        // has arrived); otherwise the next request is tried.
        let wanted = 16 * 400.0
        var pending: Task<(Int, String), any Error>?
        for _ in 0..<5 where pending == nil {
            let before = try await server.metric("flexpert:generation_tokens_total") ?? 0
            let request = Task { () -> (Int, String) in
                try await server.exchange.fetch(method: "POST", path: "/v1/completions",
                                                body: Array(#"{"prompt": "x", "n": 16, "max_tokens": 400, "ignore_eos": true}"#.utf8))
            }
            let deadline = Date().addingTimeInterval(30)
            while try await server.metric("flexpert:generation_tokens_total") ?? 0 == before && Date() < deadline {
                try await Task.sleep(for: .milliseconds(5))
            }
            for child in children { kill(child, SIGSTOP) }
            var counted = -1.0
            while true {
                try await Task.sleep(for: .milliseconds(100))
                let now = try await server.metric("flexpert:generation_tokens_total") ?? 0
                if now == counted { break }
                counted = now
            }
            if counted < before + wanted {
                pending = request
            } else {
                for child in children { kill(child, SIGCONT) }
                _ = try await request.value
            }
        }
        let request = try #require(pending, "every request finished before its ranks could be frozen")
        kill(children[0], SIGKILL)
        kill(children[1], SIGCONT)
        let (status, body) = try await request.value
        let json = jsonObject(body)
        #expect(status >= 500, "\(json)")
        #expect(((json["error"] as? [String: Any])?["message"] as? String)?.contains("rank") == true, "\(json)")
        #expect(try await server.get("/health").status == 503)
    }

    static func children(of parent: Int32) throws -> [Int32] {
        let entries = try FileManager.default.contentsOfDirectory(atPath: "/proc")
        return entries.compactMap { Int32($0) }.filter { pid in
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return false }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 2 && Int32(fields[1]) == parent
        }
    }
}

/// A value shared between a test and the closures it hands out.
final class Locked<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Value
    init(_ value: Value) { stored = value }
    var value: Value {
        get { lock.lock(); defer { lock.unlock() }; return stored }
        set { lock.lock(); stored = newValue; lock.unlock() }
    }
}

/// Heartbeats: a rank whose process is stopped keeps its connections open, so only its silence
/// shows. Here one of two ranks that each hold half the experts: the survivor alone cannot hold
/// them all, so the cluster says which rank was lost, why, and that it cannot serve, instead of waiting.
struct HeartbeatTests {
    @Test(.timeLimit(.minutes(3))) func aStoppedRankIsSeenByItsSilence() async throws {
        let server = try ServerProcess(["--data-parallel-size", "2", "--enable-elastic-ep", "--collective-timeout", "4",
                                        "--elastic-ep-heartbeat-timeout", "2"])
        defer { server.stop() }
        let children = try ExpertParallelServingTests.children(of: server.process.processIdentifier)
        try #require(children.count == 2, "\(children)")
        defer { for child in children { kill(child, SIGCONT) } }
        let before = try await server.metric("flexpert:generation_tokens_total") ?? 0
        let request = Task { () -> (Int, String) in
            try await server.exchange.fetch(method: "POST", path: "/v1/completions",
                                            body: Array(#"{"prompt": "x", "n": 64, "max_tokens": 500, "ignore_eos": true}"#.utf8))
        }
        let deadline = Date().addingTimeInterval(60)
        while try await server.metric("flexpert:generation_tokens_total") ?? 0 == before && Date() < deadline {
            try await Task.sleep(for: .milliseconds(5))
        }
        // 64 × 500 tokens take seconds on any machine: the request is still running when the rank stops.
        kill(children[1], SIGSTOP)
        let (status, body) = try await request.value
        #expect(status >= 500, "\(body)")
        let state = jsonObject(try await server.get("/elastic_ep/status").body)
        let error = state["last_error"] as? String ?? ""
        #expect(state["phase"] as? String == "failed" && error.contains("answered no heartbeat"), "\(state) \(body)")
        #expect(try await server.get("/health").status == 503)
        let (scaled, reply) = try await server.post("/scale_elastic_ep", #"{"new_data_parallel_size": 2}"#)
        #expect(scaled == 500 && "\(reply)".contains("cannot serve"), "\(reply)")
    }
}
