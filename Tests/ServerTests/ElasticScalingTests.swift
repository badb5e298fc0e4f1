import BenchServe
import Foundation
import NIOCore
import OpenAIAPI
import Synchronization
import Testing

/// `flexpert serve --enable-elastic-ep`: real rank processes on loopback grow and shrink while
/// greedy requests run without pause. No request fails, and every request's tokens are those of a
/// server that never scaled.
///
/// Serialized: each test runs up to four rank processes and a reference server under load, and
/// three of them at once (the DeepSeek and GPT-OSS scales beside the Qwen one) starved a 2-core
/// machine until a leaving rank drained before its scale committed, so no request migrated.
@Suite(.serialized) struct ElasticScalingTests {
    static let arguments = arguments(model: ExpertParallelServingTests.twelveExperts)

    static func arguments(model: String) -> [String] {
        ["--model", model, "--load-format", "dummy", "--tokenizer", ServerProcess.model]
    }

    /// Every fourth request is long (120 tokens), so that ranks hold requests through the phases of
    /// an operation; the others keep the answers coming.
    static let bodies = (0..<12).map { index in
        let prompt = (0..<(3 + index * 2)).map { ($0 * 71 + index * 193 + 11) % 1990 }
        let length = index % 4 == 3 ? 120 : 16 + index % 4 * 6
        return #"{"prompt":\#(prompt),"max_tokens":\#(length),"temperature":0,"ignore_eos":true,"logprobs":0,"return_tokens_as_token_ids":true}"#
    }

    static func tokens(_ json: [String: Any]) -> [Int] {
        let choice = (json["choices"] as? [[String: Any]])?.first
        let tokens = (choice?["logprobs"] as? [String: Any])?["tokens"] as? [String] ?? []
        return tokens.compactMap { Int($0.dropFirst("token_id:".count)) }
    }

    /// Held during a scale-down: streamed with `n` at least the number of ranks, so that the router's
    /// least-loaded choice puts a choice on every rank, leaving ones included. 500 tokens (nearly the
    /// models' 512 positions) outlast the moment the scale starts (when it migrates), so migration
    /// is certain.
    static let heldPrompt = [5, 901, 77, 1402, 33]
    static func heldBody(choices: Int, stream: Bool) -> String {
        #"{"prompt":\#(heldPrompt),"max_tokens":500,"n":\#(choices),"temperature":0,"ignore_eos":true,"logprobs":0,"#
            + #""return_tokens_as_token_ids":true,"stream":\#(stream)}"#
    }

    static func reference(model: String = ExpertParallelServingTests.twelveExperts) async throws -> (answers: [[Int]], held: [Int]) {
        let server = try ServerProcess(arguments(model: model))
        defer { server.stop() }
        var result: [[Int]] = []
        for body in bodies {
            let (status, json) = try await server.post("/v1/completions", body)
            #expect(status == 200)
            result.append(tokens(json))
        }
        let (status, json) = try await server.post("/v1/completions", heldBody(choices: 1, stream: false))
        #expect(status == 200)
        #expect(tokens(json).count == 500)
        return (result, tokens(json))
    }

    /// Starts the held request and returns once its first chunk arrived (every choice is routed by
    /// then: the front end hands all of them to the router before any output); the task gives each
    /// choice's tokens.
    static func hold(_ server: ServerProcess, choices: Int) async throws -> Task<[[Int]], any Error> {
        let (started, signal) = AsyncStream<Void>.makeStream()
        let task = Task {
            var parser = ServerSentEventParser()
            var held = Array(repeating: [Int](), count: choices)
            defer { signal.finish() }
            try await server.exchange.send(method: "POST", path: "/v1/completions",
                                           body: Array(heldBody(choices: choices, stream: true).utf8)) { buffer in
                for event in parser.feed(buffer.readableBytesView) where event != "[DONE]" {
                    signal.yield()
                    for choice in jsonObject(event)["choices"] as? [[String: Any]] ?? [] {
                        guard let index = choice["index"] as? Int, held.indices.contains(index) else { continue }
                        let tokens = (choice["logprobs"] as? [String: Any])?["tokens"] as? [String] ?? []
                        held[index] += tokens.compactMap { Int($0.dropFirst("token_id:".count)) }
                    }
                }
            }
            return held
        }
        for await _ in started { break }
        return task
    }

    /// Sends requests from `workers` clients without pause until `stop` is set; returns every
    /// answer as (body index, status, tokens).
    static func load(_ server: ServerProcess, workers: Int, stop: StopFlag) async -> [(Int, Int, [Int])] {
        await withTaskGroup(of: [(Int, Int, [Int])].self) { group in
            for worker in 0..<workers {
                group.addTask {
                    var answers: [(Int, Int, [Int])] = []
                    var next = worker
                    while !stop.isSet {
                        let index = next % bodies.count
                        next += workers
                        do {
                            let (status, json) = try await server.post("/v1/completions", bodies[index])
                            answers.append((index, status, tokens(json)))
                        } catch {
                            answers.append((index, -1, []))
                        }
                    }
                    return answers
                }
            }
            return await group.reduce(into: []) { $0 += $1 }
        }
    }

    static func scale(_ server: ServerProcess, to size: Int) async throws -> (status: Int, json: [String: Any]) {
        try await server.post("/scale_elastic_ep", #"{"new_data_parallel_size":\#(size)}"#)
    }

    /// The `flexpert engine` children of the server, as the kernel lists them.
    static func rankProcesses(_ server: ServerProcess) throws -> Int {
        let pgrep = Process()
        pgrep.executableURL = URL(fileURLWithPath: "/usr/bin/pgrep")
        pgrep.arguments = ["-P", "\(server.process.processIdentifier)"]
        let output = Pipe()
        pgrep.standardOutput = output
        try pgrep.run()
        pgrep.waitUntilExit()
        return String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            .split(separator: "\n").count
    }

    static func waitFor(_ what: String, _ condition: () async throws -> Bool) async throws {
        let deadline = Date().addingTimeInterval(15)
        while Date() < deadline {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        Issue.record("timed out waiting for \(what)")
    }

    func scaleUnderLoad(startingAt start: Int, through sizes: [Int], model: String = ExpertParallelServingTests.twelveExperts) async throws {
        let (reference, heldReference) = try await Self.reference(model: model)
        let server = try ServerProcess(Self.arguments(model: model) + ["--data-parallel-size", "\(start)", "--enable-elastic-ep"])
        defer { server.stop() }
        let stop = StopFlag()
        let name = URL(fileURLWithPath: model).lastPathComponent
        let received = "flexpert:requests_received_total{model_name=\"\(name)\"}"
        let receivedBefore = try await server.metric(received) ?? 0
        let loading = Task { await Self.load(server, workers: 6, stop: stop) }
        var previous = start
        var holds: [Task<[[Int]], any Error>] = []
        for size in sizes {
            try await Task.sleep(for: .milliseconds(300))
            if size < previous { holds.append(try await Self.hold(server, choices: 2 * previous)) }
            let (status, json) = try await Self.scale(server, to: size)
            #expect(status == 200, "scale \(previous) → \(size): \(json)")
            let moved = (json["timings"] as? [String: Any])?["migrated_requests"] as? Double ?? 0
            if size < previous {
                #expect(moved >= Double(previous - size), "scale \(previous) → \(size) migrated \(moved) requests")
            }
            let (_, text) = try await server.get("/elastic_ep/status")
            let state = jsonObject(text)
            let phase = state["phase"] as? String, current = state["current_size"] as? Int
            #expect(phase == "idle", "\(text)")
            #expect(current == size, "\(text)")
            if size > previous {
                // The newcomers take requests and compute experts for the others.
                try await Self.waitFor("rank \(size - 1) to generate tokens") {
                    try await server.metric("flexpert:engine_generation_tokens_total{model_name=\"\(name)\",rank=\"\(size - 1)\"}") ?? 0 > 0
                }
                try await Self.waitFor("rank \(size - 1) to exchange expert rows") {
                    try await server.metric("flexpert:all_to_all_bytes_total{model_name=\"\(name)\",rank=\"\(size - 1)\"}") ?? 0 > 0
                }
            } else {
                try await Self.waitFor("the leaving processes to exit") { try Self.rankProcesses(server) == size }
            }
            previous = size
        }
        // However slow the machine, the load runs until enough requests were served around the scales.
        let deadline = Date().addingTimeInterval(120)
        while try await server.metric(received) ?? 0 < receivedBefore + 24 && Date() < deadline {
            try await Task.sleep(for: .milliseconds(100))
        }
        stop.set()
        let answers = await loading.value
        #expect(answers.count > 20, "only \(answers.count) requests ran")
        let failed = answers.filter { $0.1 != 200 }
        #expect(failed.isEmpty, "\(failed.count) of \(answers.count) requests failed")
        let changed = answers.filter { $0.1 == 200 && $0.2 != reference[$0.0] }
        #expect(changed.isEmpty, "\(changed.count) of \(answers.count) requests got other tokens")
        #expect(try Self.rankProcesses(server) == sizes.last!)
        for hold in holds {
            let held = try await hold.value
            #expect(held.allSatisfy { $0 == heldReference }, "held choices: \(held.map(\.count)) tokens")
        }
    }

    @Test(.timeLimit(.minutes(5))) func twoToFourToThreeToTwoUnderLoad() async throws {
        try await scaleUnderLoad(startingAt: 2, through: [4, 3, 2])
    }

    @Test(.timeLimit(.minutes(5))) func oneToTwoToOneUnderLoad() async throws {
        try await scaleUnderLoad(startingAt: 1, through: [2, 1])
    }

    /// DeepSeek-V3's shape (latent attention, grouped sigmoid routing, a shared expert, a dense
    /// first layer) scales as the others do.
    @Test(.timeLimit(.minutes(5))) func deepSeekTwoToFourToTwoUnderLoad() async throws {
        try await scaleUnderLoad(startingAt: 2, through: [4, 2], model: ExpertParallelServingTests.deepSeekTwelveExperts)
    }

    /// GPT-OSS's biased experts move with their biases.
    @Test(.timeLimit(.minutes(5))) func gptOssTwoToFourToTwoUnderLoad() async throws {
        try await scaleUnderLoad(startingAt: 2, through: [4, 2], model: ExpertParallelServingTests.gptOssTwelveExperts)
    }

    /// The server's open descriptors, sockets among them, and threads, from /proc.
    static func footprint(_ server: ServerProcess) throws -> (descriptors: Int, sockets: Int, threads: Int) {
        let pid = server.process.processIdentifier
        let entries = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")
        let sockets = entries.filter {
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\($0)"))?.hasPrefix("socket:") ?? false
        }.count
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        let threads = status.split(separator: "\n").first { $0.hasPrefix("Threads:") }
            .flatMap { Int($0.dropFirst("Threads:".count).trimmingCharacters(in: .whitespaces)) } ?? 0
        return (entries.count, sockets, threads)
    }

    /// 2 → 4 → 2, four times: every cycle leaves the server with the sockets and threads of the
    /// first, and descriptors grow by no more than the one epoll, eventfd and timerfd that the
    /// runtime creates lazily, once, at a moment that depends on timing.
    @Test(.timeLimit(.minutes(5))) func repeatedCyclesLeakNothing() async throws {
        let server = try ServerProcess(Self.arguments + ["--data-parallel-size", "2", "--enable-elastic-ep"])
        defer { server.stop() }
        var footprints: [(descriptors: Int, sockets: Int, threads: Int)] = []
        for _ in 0..<4 {
            for size in [4, 2] {
                let (status, json) = try await Self.scale(server, to: size)
                #expect(status == 200, "\(json)")
                let (answer, _) = try await server.post("/v1/completions", Self.bodies[1])
                #expect(answer == 200)
            }
            try await Self.waitFor("the leaving processes to exit") { try Self.rankProcesses(server) == 2 }
            // Connections being closed (the last request's, a leaving rank's) may take a moment; a leak never ends.
            if let first = footprints.first {
                let deadline = Date().addingTimeInterval(10)
                while try Self.footprint(server).sockets != first.sockets && Date() < deadline {
                    try await Task.sleep(for: .milliseconds(50))
                }
            } else {
                try await Task.sleep(for: .milliseconds(300))
            }
            footprints.append(try Self.footprint(server))
        }
        #expect(footprints.allSatisfy { $0.sockets == footprints[0].sockets }, "sockets \(footprints)")
        #expect(footprints.allSatisfy { $0.threads <= footprints[0].threads + 1 }, "threads \(footprints)")
        #expect(footprints[3].descriptors <= footprints[0].descriptors + 3, "descriptors \(footprints)")
    }

    /// A newcomer that dies while preparing rolls the operation back: the old size keeps serving,
    /// the status says why, and the next scale works. A scale while one runs gets 409; sizes out
    /// of range or not integers get 400.
    @Test(.timeLimit(.minutes(5))) func failuresRollBackAndBadRequestsAreRefused() async throws {
        let server = try ServerProcess(Self.arguments + ["--data-parallel-size", "2", "--enable-elastic-ep"],
                                       environment: ["FLEXPERT_FAULT_NEWCOMER": "1:exit,2:sleep:3"])
        defer { server.stop() }
        let (failedStatus, failedJSON) = try await Self.scale(server, to: 4)
        #expect(failedStatus == 500, "\(failedJSON)")
        let (_, text) = try await server.get("/elastic_ep/status")
        let state = jsonObject(text)
        let phase = state["phase"] as? String, current = state["current_size"] as? Int
        let lastError = state["last_error"] as? String ?? ""
        #expect(phase == "failed", "\(text)")
        #expect(current == 2, "\(text)")
        #expect(!lastError.isEmpty)
        let (status, json) = try await server.post("/v1/completions", Self.bodies[0])
        #expect(status == 200 && !Self.tokens(json).isEmpty, "serving after the rollback: \(json)")
        try await Self.waitFor("the failed newcomers to be gone") { try Self.rankProcesses(server) == 2 }

        // Generation 2's newcomers start slowly: meanwhile the server is scaling and refuses another scale.
        async let slow = Self.scale(server, to: 3)
        try await Self.waitFor("the scale to start") {
            let (_, json) = try await server.post("/is_scaling_elastic_ep", "")
            return json["is_scaling_elastic_ep"] as? Bool == true
        }
        let (busy, busyJSON) = try await Self.scale(server, to: 4)
        #expect(busy == 409, "\(busyJSON)")
        let (scaled, scaledJSON) = try await slow
        #expect(scaled == 200, "\(scaledJSON)")
        #expect(try Self.rankProcesses(server) == 3)

        for body in [#"{"new_data_parallel_size":1}"#, #"{"new_data_parallel_size":0}"#, #"{"new_data_parallel_size":"two"}"#,
                     #"{"new_data_parallel_size":2.5}"#, #"{}"#, "nonsense", #"{"new_data_parallel_size":1000}"#] {
            let (status, json) = try await server.post("/scale_elastic_ep", body)
            #expect(status == 400, "\(body): \(json)")
        }
        let (_, refused) = try await server.post("/scale_elastic_ep", #"{"new_data_parallel_size":1}"#)
        let message = (refused["error"] as? [String: Any])?["message"] as? String ?? ""
        #expect(message.contains("between 2 and"), "\(message)")
    }
}

final class StopFlag: Sendable {
    private let value = Mutex(false)
    var isSet: Bool { value.withLock { $0 } }
    func set() { value.withLock { $0 = true } }
}
