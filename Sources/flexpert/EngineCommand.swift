import ArgumentParser
import Cluster
import Distributed
import Engine
import Foundation
import Models
import Parallelism

/// `flexpert engine`: one rank of a cluster, started by `serve --data-parallel-size` or by hand on
/// any machine that reaches the coordinator.
struct EngineCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "engine", abstract: "Run one engine rank and join the coordinator of a running server.")

    @Option(help: "The coordinator's store, HOST:PORT (serve prints it).")
    var coordinator: String

    @Option(name: .customLong("join-token"), help: "The cluster's join token (default: $FLEXPERT_JOIN_TOKEN).")
    var joinToken: String?

    @Option(help: "The address other ranks reach this one at.")
    var host = "127.0.0.1"

    func run() throws {
        let parts = coordinator.split(separator: ":")
        guard parts.count == 2, let port = Int(parts[1]) else { throw ValidationError("--coordinator must be HOST:PORT") }
        guard let token = joinToken ?? ProcessInfo.processInfo.environment["FLEXPERT_JOIN_TOKEN"] else {
            throw ValidationError("give --join-token or set FLEXPERT_JOIN_TOKEN")
        }
        let store: StoreClient
        do {
            store = try StoreClient(host: String(parts[0]), port: port, token: token, connectTimeout: .seconds(30))
        } catch DistributedError.refused(let reason) {
            throw RankError("the coordinator refused this rank: \(reason)")
        }
        let configuration = try JSONDecoder().decode(
            RankConfiguration.self, from: Data(try store.get(RankConfiguration.storeKey, timeout: .seconds(30))))
        let rank = Int(try store.add(RankConfiguration.joinedKey, 1)) - 1
        guard rank < configuration.size else {
            throw RankError("the cluster already has its \(configuration.size) ranks")
        }
        guard let device = DeviceKind(rawValue: configuration.device),
              let loadFormat = LoadFormat(rawValue: configuration.loadFormat) else {
            throw RankError("the coordinator asked for device '\(configuration.device)', load format '\(configuration.loadFormat)'")
        }
        let timeout = Duration.milliseconds(Int64(configuration.collectiveTimeoutSeconds * 1000))
        let (core, group, dispatch) = try RankBuilder.build(
            RankBuilder.Settings(model: configuration.model, loadFormat: loadFormat, device: device,
                                 blockSize: configuration.blockSize, maxBatchedTokens: configuration.maxBatchedTokens,
                                 maxSequences: configuration.maxSequences, maxModelLength: configuration.maxModelLength,
                                 kvCacheMemory: configuration.kvCacheMemoryBytes.map { .bytes($0) }
                                     ?? .fractionOfFree(configuration.kvCacheMemoryFraction),
                                 cpuThreads: configuration.cpuThreads),
            membership: RankBuilder.Membership(store: store, rank: rank, size: configuration.size,
                                               redundantExperts: configuration.redundantExperts, host: host,
                                               collectiveTimeout: timeout))
        let address = configuration.frontEnd.split(separator: ":")
        guard address.count == 2, let frontEndPort = Int(address[1]) else {
            throw RankError("the coordinator published a bad front end address '\(configuration.frontEnd)'")
        }
        let connection = try TCPSocket.connect(host: String(address[0]), port: frontEndPort, deadline: .now + .seconds(30))
        try connection.sendFrame(EngineMessage.hello(rank: rank, token: token).encoded(), deadline: .now + .seconds(10))
        FileHandle.standardError.write(Data("flexpert engine: rank \(rank) of \(configuration.size) serving\n".utf8))
        let eplb = dispatch.map { dispatch in
            let rebalancer = configuration.eplbStepInterval.map { _ in
                ExpertRebalancer(dispatch: dispatch, experts: core.model.layers.map(\.experts), backend: core.backend,
                                 layersPerStep: configuration.eplbLayersPerStep)
            }
            return EPLB(dispatch: dispatch, rebalancer: rebalancer, windowSize: configuration.eplbWindowSize,
                        logInterval: configuration.eplbLogInterval, stepInterval: configuration.eplbStepInterval ?? 1)
        }
        try RankLoop(core: core, group: group, connection: connection, collectiveTimeout: timeout, eplb: eplb).run()
        group?.close()
    }
}

struct RankError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
