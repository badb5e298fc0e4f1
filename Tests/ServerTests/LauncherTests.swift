import Foundation
import Testing

/// `--elastic-ep-launcher`: the ranks a scale-up adds are started by a command the operator gives
/// (here a shell line that starts them on this machine), which gets the coordinator, the token,
/// the rank and the generation in its environment.
struct LauncherTests {
    @Test(.timeLimit(.minutes(3))) func aScaleUpStartsItsRanksThroughTheLauncher() async throws {
        let marker = FileManager.default.temporaryDirectory.appendingPathComponent("flexpert-launcher-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: marker) }
        let launcher = #"echo "$FLEXPERT_RANK:$FLEXPERT_GENERATION:${#FLEXPERT_JOIN_TOKEN}" >> "\#(marker.path)"; "#
            + #"exec "\#(ServerProcess.executable.path)" engine --coordinator "$FLEXPERT_COORDINATOR" --generation "$FLEXPERT_GENERATION""#
        let server = try ServerProcess(ElasticScalingTests.arguments + ["--enable-elastic-ep", "--elastic-ep-launcher", launcher])
        defer { server.stop() }
        let (status, json) = try await ElasticScalingTests.scale(server, to: 3)
        #expect(status == 200, "\(json)")
        let lines = try String(contentsOf: marker, encoding: .utf8).split(separator: "\n").map(String.init).sorted()
        #expect(lines.count == 2 && lines.allSatisfy { !$0.hasSuffix(":0") }, "\(lines)")
        #expect(lines.map { $0.split(separator: ":").prefix(2).joined(separator: ":") } == ["1:1", "2:1"])
        let (answered, _) = try await server.post("/v1/completions", ElasticScalingTests.bodies[0])
        #expect(answered == 200)
        #expect(jsonObject(try await server.get("/elastic_ep/status").body)["current_size"] as? Int == 3)
    }

    @Test(.timeLimit(.minutes(3))) func aLauncherThatFailsRollsTheScaleBack() async throws {
        let server = try ServerProcess(ElasticScalingTests.arguments + ["--enable-elastic-ep", "--elastic-ep-launcher", "exit 3"])
        defer { server.stop() }
        let (status, json) = try await ElasticScalingTests.scale(server, to: 2)
        #expect(status == 500)
        #expect("\(json)".contains("the launcher of rank 1 exited with status 3"), "\(json)")
        let (answered, _) = try await server.post("/v1/completions", ElasticScalingTests.bodies[0])
        #expect(answered == 200)
        #expect(jsonObject(try await server.get("/elastic_ep/status").body)["current_size"] as? Int == 1)
    }
}
