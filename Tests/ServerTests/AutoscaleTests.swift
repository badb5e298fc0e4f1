import Foundation
import Testing

/// `--elastic-ep-autoscale` on real rank processes: the cluster grows under load and returns to
/// its minimum when the load ends, with no failed request and no changed output.
struct AutoscaleTests {
    static func waitFor(_ what: String, within seconds: Double, _ condition: () async throws -> Bool) async throws -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try await condition() { return true }
            try await Task.sleep(for: .milliseconds(100))
        }
        Issue.record("timed out waiting for \(what)")
        return false
    }

    static func status(_ server: ServerProcess) async throws -> [String: Any] {
        jsonObject(try await server.get("/elastic_ep/status").body)
    }

    @Test(.timeLimit(.minutes(5))) func theClusterGrowsUnderLoadAndShrinksWhenIdle() async throws {
        let (reference, _) = try await ElasticScalingTests.reference()
        // Six clients on one rank are six requests a rank against a target of 2: the autoscaler
        // wants ⌈6 / 2⌉ = 3 ranks, at most 2. Idle, 0 a rank is below 1: back to 1.
        let server = try ServerProcess(ElasticScalingTests.arguments + [
            "--data-parallel-size", "1", "--enable-elastic-ep", "--elastic-ep-autoscale", "--elastic-ep-min-size", "1",
            "--elastic-ep-max-size", "2", "--autoscale-target-requests-per-rank", "2", "--autoscale-up-window-s", "1",
            "--autoscale-down-window-s", "2", "--autoscale-cooldown-s", "1",
        ])
        defer { server.stop() }
        let stop = StopFlag()
        let loading = Task { await ElasticScalingTests.load(server, workers: 6, stop: stop) }
        let grew = try await Self.waitFor("the autoscaler to grow to 2 ranks", within: 120) {
            let state = try await Self.status(server)
            return state["current_size"] as? Int == 2 && state["phase"] as? String == "idle"
        }
        // The newcomer serves before the load ends.
        if grew {
            _ = try await Self.waitFor("rank 1 to generate tokens", within: 60) {
                try await server.metric("flexpert:engine_generation_tokens_total{model_name=\"ep12\",rank=\"1\"}") ?? 0 > 0
            }
        }
        stop.set()
        let answers = await loading.value
        let shrank = try await Self.waitFor("the autoscaler to shrink to 1 rank", within: 120) {
            let state = try await Self.status(server)
            return state["current_size"] as? Int == 1 && state["phase"] as? String == "idle"
        }

        let autoscale = try await Self.status(server)["autoscale"] as? [String: Any] ?? [:]
        // A loaded machine may starve the clients (this process) long enough for a dip below the
        // target, and so a shrink and a grow again under load: every grow has its shrink by the end.
        let ups = autoscale["scale_ups"] as? Int ?? 0
        #expect(ups >= 1 && autoscale["scale_downs"] as? Int == ups, "\(autoscale)")
        // The last requests may still run when the window closes: fewer than 2 on 2 ranks.
        let last = autoscale["last_decision"] as? String ?? ""
        #expect(last.hasPrefix("2 → 1 ranks: ") && last.contains("a rank, below 1 for"), "\(autoscale)")
        #expect(try await server.metric("flexpert:autoscale_decisions_total{model_name=\"ep12\",direction=\"up\"}") == Double(ups))
        #expect(try await server.metric("flexpert:elastic_ep_size{model_name=\"ep12\"}") == 1)
        #expect(answers.count > 20, "only \(answers.count) requests ran")
        let failed = answers.filter { $0.1 != 200 }
        #expect(failed.isEmpty, "\(failed.count) of \(answers.count) requests failed")
        let changed = answers.filter { $0.1 == 200 && $0.2 != reference[$0.0] }
        #expect(changed.isEmpty, "\(changed.count) of \(answers.count) requests got other tokens")
        if grew && shrank {
            _ = try await Self.waitFor("the leaving process to exit", within: 30) { try ElasticScalingTests.rankProcesses(server) == 1 }
        }
    }

    @Test func autoscalingNeedsElasticEPAndBoundsThatHoldEveryExpert() async throws {
        for (arguments, message) in [
            (["--elastic-ep-autoscale"], "--elastic-ep-autoscale needs --enable-elastic-ep"),
            (["--enable-elastic-ep", "--elastic-ep-autoscale", "--elastic-ep-min-size", "3", "--elastic-ep-max-size", "2"],
             "--elastic-ep-max-size (2) must be at least --elastic-ep-min-size (3)"),
        ] {
            let process = Process()
            process.executableURL = ServerProcess.executable
            process.arguments = ["serve", "--port", "0"] + ElasticScalingTests.arguments + arguments
            let errors = Pipe()
            process.standardError = errors
            process.standardOutput = FileHandle.nullDevice
            try process.run()
            let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            #expect(process.terminationStatus != 0)
            #expect(text.contains(message), "\(text)")
        }
    }
}
