import ArgumentParser
import Checkpoint
import Compute
import ComputeCUDA
import Elastic
import Engine
import Experts
import Foundation
import Messages
import Models
import Parallelism
import Transport

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

    @Option(help: "Join a growing cluster as a newcomer of this reconfiguration generation (serve passes it).")
    var generation: Int?

    func run() throws {
        let parts = coordinator.split(separator: ":")
        guard parts.count == 2, let port = Int(parts[1]) else { throw ValidationError("--coordinator must be HOST:PORT") }
        guard let token = joinToken ?? ProcessInfo.processInfo.environment["FLEXPERT_JOIN_TOKEN"] else {
            throw ValidationError("give --join-token or set FLEXPERT_JOIN_TOKEN")
        }
        let store: StoreClient
        do {
            store = try StoreClient(host: String(parts[0]), port: port, token: token, connectTimeout: .seconds(30))
        } catch TransportError.refused(let reason) {
            throw RankError("the coordinator refused this rank: \(reason)")
        }
        let configuration = try JSONDecoder().decode(
            RankConfiguration.self, from: Data(try store.get(RankConfiguration.storeKey, timeout: .seconds(30))))
        let device = configuration.device, loadFormat = configuration.loadFormat, all2allBackend = configuration.all2allBackend
        let timeout = Duration.milliseconds(Int64(configuration.collectiveTimeoutSeconds * 1000))
        let prepareTimeout = Duration.milliseconds(Int64(configuration.prepareTimeoutSeconds * 1000))
        let settings = RankBuilder.Settings(
            model: configuration.model, loadFormat: loadFormat, device: device, blockSize: configuration.blockSize,
            maxBatchedTokens: configuration.maxBatchedTokens, maxSequences: configuration.maxSequences,
            maxModelLength: configuration.maxModelLength,
            kvCacheMemory: configuration.kvCacheMemoryBytes.map { .bytes($0) } ?? .utilization(configuration.gpuMemoryUtilization),
            cpuThreads: configuration.cpuThreads, all2allBackend: all2allBackend, cachesPrefixes: configuration.cachesPrefixes)
        let access = ClusterAccess(storeHost: String(parts[0]), storePort: port, token: token, host: host,
                                   prepareTimeout: prepareTimeout)

        let rank: Int, size: Int
        let core: EngineCore, group: StatelessGroup?, dispatch: ExpertParallelDispatch?
        var newcomer: RankLoop.Newcomer?
        if let generation {
            try Self.injectFault(generation: generation)
            let invitation = try JoinInvitation(decoding: try store.get(JoinInvitation.storeKey(generation), timeout: .seconds(30)))
            rank = invitation.firstNewRank.index + Int(try store.add(JoinInvitation.joinedKey(generation), 1)) - 1
            size = invitation.size
            guard rank < size else { throw RankError("generation \(generation) already has its \(size) ranks") }
            let built = try RankBuilder.buildNewcomer(
                settings, membership: RankBuilder.Membership(store: store, rank: rank, size: size, redundantExperts: 0,
                                                             host: host, collectiveTimeout: timeout),
                generation: generation, prepareTimeout: prepareTimeout)
            (core, group, dispatch) = (built.core, built.group, built.dispatch)
            newcomer = RankLoop.Newcomer(generation: generation, target: try built.plan.targetPlacements(),
                                         prepareCommandID: invitation.prepare.id)
        } else {
            rank = Int(try store.add(RankConfiguration.joinedKey, 1)) - 1
            size = configuration.size
            guard rank < size else { throw RankError("the cluster already has its \(size) ranks") }
            (core, group, dispatch) = try RankBuilder.build(
                settings, membership: RankBuilder.Membership(store: store, rank: rank, size: size,
                                                             redundantExperts: configuration.redundantExperts, host: host,
                                                             collectiveTimeout: timeout))
        }
        let address = configuration.frontEnd.split(separator: ":")
        guard address.count == 2, let frontEndPort = Int(address[1]) else {
            throw RankError("the coordinator published a bad front end address '\(configuration.frontEnd)'")
        }
        let connection = try TCPSocket.connect(host: String(address[0]), port: frontEndPort, deadline: .now + .seconds(30))
        try connection.sendFrame(EngineMessage.hello(rank: RankID(rank), token: token).encoded(), deadline: .now + .seconds(10))
        if let generation {
            try connection.sendFrame(EngineMessage.report(rank: RankID(rank), .prepared(generation: generation)).encoded(),
                                     deadline: .now + .seconds(10))
        }
        let transport = dispatch.map { " (expert rows over \($0.exchange?.transport ?? $0.collectives?.transport ?? "host"))" } ?? ""
        FileHandle.standardError.write(Data(
            "flexpert engine: rank \(rank) of \(size) (pid \(getpid())) serving on \(core.backend.device)\(transport)\n".utf8))
        let eplb = dispatch.map { dispatch in
            EPLB(dispatch: dispatch,
                 rebalancer: ExpertRebalancer(dispatch: dispatch, experts: core.model.layers.map(\.experts), backend: core.backend,
                                              layersPerStep: configuration.eplbLayersPerStep,
                                              expertGroups: core.model.configuration.moe.groups?.count ?? 1),
                 windowSize: configuration.eplbWindowSize, logInterval: configuration.eplbLogInterval,
                 stepInterval: configuration.eplbStepInterval)
        }
        let standbyTransports: StandbyTransports = { generation, rank, size, slotsPerRank in
            try RankTransport(settings, model: core.model, paddingSlot: core.cache.paddingSlot, backend: core.backend,
                              generation: generation, rank: rank, size: size, slotsPerRank: slotsPerRank, timeout: timeout,
                              joinTimeout: prepareTimeout)
        }
        // GPU time per kernel over the rank's life, printed when it ends.
        let profiled = KernelProfile.isRequested ? core.backend as? CUDABackend : nil
        try profiled?.setProfiling(true)
        defer {
            if let profiled {
                let tokens = core.statistics(stepCount: 0, lastStepSeconds: 0).generatedTokenCount
                KernelProfile.print(profiled, title: "flexpert engine: rank \(rank) GPU time per kernel, \(tokens) tokens sampled")
            }
        }
        try RankLoop(core: core, group: group, rank: rank, connection: connection, collectiveTimeout: timeout,
                     dispatch: dispatch, eplb: eplb, access: access, newcomer: newcomer,
                     standbyTransports: standbyTransports, checkpoint: configuration.healsLostRanks ? { try RankBuilder.weights(settings) } : nil,
                     beforeCommand: Self.commandFault()).run()
        group?.close()
        store.close()
    }
}

extension EngineCommand {
    /// Faults for the elastic tests, set in the server's environment (its newcomers inherit it):
    /// `FLEXPERT_FAULT_NEWCOMER=G:exit` makes newcomers of generation G exit before joining,
    /// `G:sleep:S` makes them wait S seconds first (a slow start); several faults are separated by commas.
    static func injectFault(generation: Int) throws {
        guard let faults = ProcessInfo.processInfo.environment["FLEXPERT_FAULT_NEWCOMER"] else { return }
        for fault in faults.split(separator: ",") {
            let parts = fault.split(separator: ":")
            guard parts.first.flatMap({ Int($0) }) == generation, parts.count >= 2 else { continue }
            switch parts[1] {
            case "exit": throw RankError("FLEXPERT_FAULT_NEWCOMER: exiting before joining generation \(generation)")
            case "sleep": Thread.sleep(forTimeInterval: parts.count > 2 ? Double(parts[2]) ?? 1 : 1)
            default: continue
            }
        }
    }
}

extension EngineCommand {
    /// `FLEXPERT_FAULT_RANK=R:ACTION:G` (ACTION `prepare`, `commit` or `recover`) ends rank R's process at
    /// once, as a `kill -9` would, when it is about to carry out that command of generation G: a
    /// rank lost at a known point of a reconfiguration, for the recovery tests.
    static func commandFault() -> ((ControlCommand, Int) -> Void)? {
        guard let fault = ProcessInfo.processInfo.environment["FLEXPERT_FAULT_RANK"] else { return nil }
        let parts = fault.split(separator: ":")
        guard parts.count == 3, let target = Int(parts[0]), let generation = Int(parts[2]) else { return nil }
        let action = String(parts[1])
        return { command, rank in
            let name = switch command.action {
            case .prepare: "prepare"
            case .commit: "commit"
            case .abandon: "abandon"
            case .recover: "recover"
            }
            if rank == target && name == action && command.generation == generation { _exit(9) }
        }
    }
}

struct RankError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

