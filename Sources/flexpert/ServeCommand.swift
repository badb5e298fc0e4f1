import ArgumentParser
import Checkpoint
import Compute
import ComputeCUDA
import Coordination
import Elastic
import Engine
import Experts
import Foundation
import FrontEnd
import Messages
import Models
import Parallelism
import Scheduling
import Server
import Synchronization
import Tokenization
import Transport

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve a model over an OpenAI-compatible HTTP API (the built-in default model when --model is absent).")

    @Option(help: "A Hugging Face checkpoint folder; the small model built into flexpert when absent.")
    var model: String?

    @Option(help: "Folder with tokenizer.json and tokenizer_config.json (default: the model folder).")
    var tokenizer: String?

    @Option(name: .customLong("chat-template"), help: "A Jinja chat template (a file, or the template itself) instead of the tokenizer folder's.")
    var chatTemplate: String?

    @Flag(name: .customLong("trust-request-chat-template"), help: "Let a request bring its own 'chat_template'.")
    var trustsRequestChatTemplate = false

    @Flag(name: .customLong("enable-auto-tool-choice"), help: "Turn tool calls in chat output into 'tool_calls' (needs --tool-call-parser).")
    var enablesAutoToolChoice = false

    @Option(name: .customLong("tool-call-parser"),
            help: "How the model writes tool calls: \(ToolCallParser.allCases.map(\.rawValue).joined(separator: ", ")).")
    var toolCallParser: String?

    @Option(name: .customLong("reasoning-parser"),
            help: "Split <think>…</think> into 'reasoning_content': \(ReasoningParser.allCases.map(\.rawValue).joined(separator: ", ")).")
    var reasoningParser: String?

    @Option(help: "Address to listen on (0.0.0.0 for every interface).")
    var host = "127.0.0.1"

    @Option(help: "Port to listen on; 0 picks a free one (the log line says which).")
    var port = 8000

    @Option(name: .customLong("served-model-name"), parsing: .upToNextOption,
            help: "Names clients use for the model; the first is listed by /v1/models. Default: the model folder's name.")
    var servedModelNames: [String] = []

    @Option(name: .customLong("api-key"),
            help: "Demand 'Authorization: Bearer KEY' on every route but /health, /version and /metrics (default: $FLEXPERT_API_KEY).")
    var apiKey: String?

    @Option(name: .customLong("admin-api-key"),
            help: "Demand 'Authorization: Bearer KEY' on the elastic EP routes instead of --api-key (default: $FLEXPERT_ADMIN_API_KEY).")
    var adminAPIKey: String?

    @Option(name: .customLong("max-choices-per-request"), help: "Choices of one completion request: prompts × n.")
    var maxChoicesPerRequest = 1024

    @Option(name: .customLong("timeout-keep-alive"), help: "Seconds an idle HTTP connection is kept open.")
    var keepAliveTimeout = 30.0

    @Option(name: .customLong("timeout-header-read"), help: "Seconds a client may take to send a request's head.")
    var headerReadTimeout = 10.0

    @Option(name: .customLong("timeout-body-read"), help: "Seconds a client may take to send a request's body after its head.")
    var bodyReadTimeout = 30.0

    @Option(name: .customLong("shutdown-timeout"),
            help: "On SIGTERM or SIGINT: seconds running requests may go on before they are stopped and the server exits.")
    var shutdownTimeout = 30.0

    @Option(name: .customLong("max-num-batched-tokens"),
            help: "Tokens computed per step over all requests (default: 8192 on GPUs of 70 GiB or more but A100s, else 2048, as vLLM's).")
    var maxBatchedTokens: Int?

    @Option(name: .customLong("max-num-seqs"),
            help: "Requests running at once (default: 1024 on GPUs of 70 GiB or more but A100s, else 256, as vLLM's).")
    var maxSequences: Int?

    @Option(name: .customLong("max-model-len"), help: "Prompt plus generated tokens per request (default: the model's positions).")
    var maxModelLength: Int?

    @Flag(name: .customLong("enable-prefix-caching"), inversion: .prefixedNo,
          help: "Keep the KV cache blocks of finished prompts and start later prompts after their longest cached prefix.")
    var enablesPrefixCaching = true

    enum RoutingPolicy: String, ExpressibleByArgument, CaseIterable {
        case prefix, load
    }

    @Option(name: .customLong("routing-policy"),
            help: "With several data-parallel ranks: prefix (to the rank holding the longest cached prefix, within --prefix-routing-margin of the least loaded) or load (the least loaded).")
    var routingPolicy = RoutingPolicy.prefix

    @Option(name: .customLong("prefix-routing-margin"),
            help: "Requests in flight a rank may have beyond the least loaded one and still get a request for the prefix it holds.")
    var prefixRoutingMargin = 16

    @Option(name: .customLong("block-size"), help: "Tokens per KV cache block.")
    var blockSize = 16

    @Option(name: .customLong("kv-cache-memory-bytes"), help: "KV cache size, e.g. 536870912, 512MiB or 4GiB.")
    var kvCacheMemory: String?

    @Option(name: .customLong("gpu-memory-utilization"),
            help: "Without --kv-cache-memory-bytes: the share of the GPU's memory a rank fills; its KV cache takes what is left of it after the weights and (a rank holding all its experts) the largest steps' scratch (on cpu: half the memory available then). Ranks sharing a GPU: give each --kv-cache-memory-bytes.")
    var gpuMemoryUtilization = 0.9

    @Option(name: .customLong("max-request-body-bytes"), help: "Larger request bodies get 413.")
    var maxBodyBytes = 4 << 20

    @Option(help: "cpu or cuda.")
    var device: DeviceKind = .cpu

    @Option(name: .customLong("data-parallel-size"),
            help: "Engine ranks (processes), each with its own requests and KV cache, the experts split over them.")
    var dataParallelSize = 1

    @Option(name: .customLong("cpu-threads"),
            help: "Threads of each CPU rank (default: the machine's cores divided among the ranks started here).")
    var cpuThreads: Int?

    @Option(name: .customLong("all2all-backend"),
            help: "How MoE rows move between ranks: ipc (the whole layer on the GPUs, through peer memory: ranks of one host), nccl (GPU to GPU, one GPU per rank, any host), host (through host memory), or auto (ipc on cuda, nccl where peer memory cannot be reached; host on cpu).")
    var all2allBackend: All2AllBackend = .auto

    @Option(name: .customLong("data-parallel-size-local"),
            help: "How many of the ranks to start on this machine (default: all); the others join with flexpert engine.")
    var localRanks: Int?

    @Flag(name: .customLong("enable-eplb"), help: "Expert load balancing: allows redundant experts (copies of hot experts).")
    var enablesEPLB = false

    @Option(name: .customLong("num-redundant-experts"),
            help: "Extra expert slots per layer, filled with copies of experts (needs --enable-eplb).")
    var redundantExperts = 0

    @Option(name: .customLong("eplb-window-size"), help: "Steps of expert load kept for balancing.")
    var eplbWindowSize = 1000

    @Option(name: .customLong("eplb-log-interval"), help: "Every this many steps, compute, log and report the balancedness.")
    var eplbLogInterval = 100

    @Option(name: .customLong("eplb-step-interval"),
            help: "With --enable-eplb, every this many steps the ranks rebalance the experts for the measured load.")
    var eplbStepInterval = 3000

    @Option(name: .customLong("eplb-layers-per-step"),
            help: "Layers whose expert weights move at each step boundary during a rebalance (fewer: shorter stalls).")
    var eplbLayersPerStep = 1

    @Option(name: .customLong("coordinator-host"), help: "Address the coordinator and rank connections listen on.")
    var coordinatorHost = "127.0.0.1"

    @Option(name: .customLong("coordinator-port"), help: "Port of the coordinator's store; 0 picks one (the log says which).")
    var coordinatorPort = 0

    @Option(name: .customLong("join-token"), help: "Token ranks must present to join (default: $FLEXPERT_JOIN_TOKEN, else random).")
    var joinToken: String?

    @Option(name: .customLong("collective-timeout"), help: "Seconds a collective between ranks may take before the ranks fail.")
    var collectiveTimeout = 30.0

    @Option(name: .customLong("load-format"), help: "auto: weights from the folder; dummy: seeded random weights.")
    var loadFormat: String = "auto"

    @Flag(name: .customLong("enable-elastic-ep"),
          help: "Serve POST /scale_elastic_ep: grow and shrink the ranks while serving (slots per rank stay fixed).")
    var enablesElasticEP = false

    @Option(name: .customLong("elastic-ep-max-size"), help: "The most ranks a scale request may ask for.")
    var elasticMaximumSize = 16

    @Option(name: .customLong("elastic-ep-prepare-timeout"),
            help: "Seconds a scale operation may take before it rolls back.")
    var elasticPrepareTimeout = 120.0

    @Option(name: .customLong("elastic-ep-heartbeat-timeout"),
            help: "Seconds a rank may leave the front end's heartbeats unanswered before it counts as lost (0: no heartbeats).")
    var heartbeatTimeout = 5.0

    @Option(name: .customLong("elastic-ep-launcher"),
            help: ArgumentHelp("A shell command that starts each rank a scale-up adds, anywhere that reaches the coordinator, in place of a local process.",
                               discussion: "It runs once per new rank with FLEXPERT_COORDINATOR, FLEXPERT_JOIN_TOKEN, FLEXPERT_RANK and FLEXPERT_GENERATION set, and should start `flexpert engine --coordinator \"$FLEXPERT_COORDINATOR\" --generation \"$FLEXPERT_GENERATION\"`."))
    var launcher: String?

    @Flag(name: .customLong("elastic-ep-replace-failed"),
          help: "After healing from a lost rank, start new ranks (locally, or by --elastic-ep-launcher) until the cluster is back at its size.")
    var replacesFailed = false

    @Flag(name: .customLong("elastic-ep-autoscale"),
          help: "Grow and shrink the ranks by the load, within --elastic-ep-min-size ... --elastic-ep-max-size (needs --enable-elastic-ep).")
    var autoscales = false

    @Option(name: .customLong("elastic-ep-min-size"),
            help: "The fewest ranks the autoscaler scales to (never fewer than hold every expert).")
    var elasticMinimumSize = 1

    @Option(name: .customLong("autoscale-target-requests-per-rank"),
            help: "Requests running and waiting per rank the autoscaler aims at: it grows above, shrinks below half.")
    var autoscaleTarget = 8.0

    @Option(name: .customLong("autoscale-up-window-s"), help: "Seconds the load must stay above the target before a grow.")
    var autoscaleUpWindow = 10.0

    @Option(name: .customLong("autoscale-down-window-s"), help: "Seconds the load must stay below half the target before a shrink.")
    var autoscaleDownWindow = 60.0

    @Option(name: .customLong("autoscale-cooldown-s"), help: "Seconds after any scale (manual ones too) before the autoscaler decides again.")
    var autoscaleCooldown = 30.0

    func validate() throws {
        guard maxBatchedTokens ?? 1 >= 1, maxSequences ?? 1 >= 1, blockSize >= 1 else {
            throw ValidationError("--max-num-batched-tokens, --max-num-seqs and --block-size must be positive")
        }
        if prefixRoutingMargin < 0 {
            throw ValidationError("--prefix-routing-margin must be at least 0")
        }
        if let maxModelLength, maxModelLength < 2 { throw ValidationError("--max-model-len must be at least 2") }
        guard gpuMemoryUtilization > 0, gpuMemoryUtilization <= 1 else { throw ValidationError("--gpu-memory-utilization must be in (0, 1]") }
        if let kvCacheMemory, parseByteCount(kvCacheMemory) == nil {
            throw ValidationError("--kv-cache-memory-bytes: '\(kvCacheMemory)' is not a byte count (e.g. 1073741824, 512MiB, 4GiB)")
        }
        guard LoadFormat(rawValue: loadFormat) != nil else { throw ValidationError("--load-format must be auto or dummy") }
        if let toolCallParser, ToolCallParser(rawValue: toolCallParser) == nil {
            throw ValidationError("--tool-call-parser: '\(toolCallParser)' is not one of \(ToolCallParser.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        if enablesAutoToolChoice && toolCallParser == nil {
            throw ValidationError("--enable-auto-tool-choice needs --tool-call-parser")
        }
        if let reasoningParser, reasoningParser.lowercased() != "none", ReasoningParser(rawValue: reasoningParser) == nil {
            throw ValidationError("--reasoning-parser: '\(reasoningParser)' is not one of \(ReasoningParser.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard (1...65535).contains(port) || port == 0 else { throw ValidationError("--port must be in 0...65535") }
        guard dataParallelSize >= 1 else { throw ValidationError("--data-parallel-size must be at least 1") }
        if let localRanks, !(0...dataParallelSize).contains(localRanks) {
            throw ValidationError("--data-parallel-size-local must be in 0...\(dataParallelSize)")
        }
        guard collectiveTimeout > 0 else { throw ValidationError("--collective-timeout must be positive") }
        guard redundantExperts >= 0 else { throw ValidationError("--num-redundant-experts must be ≥ 0") }
        if redundantExperts > 0 && !enablesEPLB { throw ValidationError("--num-redundant-experts needs --enable-eplb") }
        guard elasticMaximumSize >= 1, elasticPrepareTimeout > 0 else {
            throw ValidationError("--elastic-ep-max-size and --elastic-ep-prepare-timeout must be positive")
        }
        if autoscales && !enablesElasticEP { throw ValidationError("--elastic-ep-autoscale needs --enable-elastic-ep") }
        if launcher != nil && !enablesElasticEP { throw ValidationError("--elastic-ep-launcher needs --enable-elastic-ep") }
        if replacesFailed && !enablesElasticEP { throw ValidationError("--elastic-ep-replace-failed needs --enable-elastic-ep") }
        guard heartbeatTimeout >= 0 else { throw ValidationError("--elastic-ep-heartbeat-timeout must be at least 0") }
        guard maxChoicesPerRequest >= 1 else { throw ValidationError("--max-choices-per-request must be at least 1") }
        guard keepAliveTimeout > 0, headerReadTimeout > 0, bodyReadTimeout > 0, shutdownTimeout >= 0 else {
            throw ValidationError("--timeout-keep-alive, --timeout-header-read and --timeout-body-read must be positive, "
                                  + "--shutdown-timeout at least 0")
        }
        if let cpuThreads, cpuThreads < 1 { throw ValidationError("--cpu-threads must be at least 1") }
        if all2allBackend == .nccl && device != .cuda { throw ValidationError("--all2all-backend nccl needs --device cuda") }
        guard eplbWindowSize >= 1, eplbLogInterval >= 1, eplbStepInterval >= 1, eplbLayersPerStep >= 1 else {
            throw ValidationError(
                "--eplb-window-size, --eplb-log-interval, --eplb-step-interval and --eplb-layers-per-step must be at least 1")
        }
    }

    func run() async throws {
        let folder = try model ?? DefaultModel.folder()
        let tokenizerFolder = tokenizer ?? folder
        let tokenizer = try Tokenizer(folder: tokenizerFolder)
        let tokenizerConfiguration = try TokenizerConfiguration(folder: tokenizerFolder)
        // Read before any engine starts, so that a template that does not parse fails the start at once.
        let override = try chatTemplate.map(ChatTemplate.init(argument:))
        var eos = try GenerationConfiguration(folder: folder).eosTokenIDs
        if let token = tokenizerConfiguration.eosToken, let id = tokenizer.id(of: token), !eos.contains(id) { eos.append(id) }
        let modelConfiguration = try ModelConfiguration(folder: folder)
        let length = maxModelLength ?? modelConfiguration.decoder.maxPositionCount
        let memory: KVCacheMemory = kvCacheMemory.flatMap(parseByteCount).map { .bytes($0) } ?? .utilization(gpuMemoryUtilization)
        let steps = try stepLimits()

        let engine: any EngineClient
        let summary: String
        let cleanup: () -> Void
        let elastic: ElasticController?
        if dataParallelSize == 1 && (localRanks ?? 1) == 1 && redundantExperts == 0 && !enablesElasticEP {
            elastic = nil
            let (core, _, _) = try RankBuilder.build(RankBuilder.Settings(
                model: folder, loadFormat: LoadFormat(rawValue: loadFormat)!, device: device, blockSize: blockSize,
                maxBatchedTokens: steps.maxBatchedTokens, maxSequences: steps.maxSequences, maxModelLength: length, kvCacheMemory: memory,
                cpuThreads: cpuThreads, cachesPrefixes: enablesPrefixCaching), membership: nil)
            summary = "on \(core.backend.device), KV cache \(core.cache.blockCount) blocks of \(blockSize) tokens, "
                + "up to \(steps.maxSequences) sequences and \(steps.maxBatchedTokens) tokens a step"
            let loop = EngineLoop(core: core)
            engine = loop
            cleanup = { loop.stop() }
        } else {
            do {
                _ = try ExpertPlacement.initial(logicalExperts: modelConfiguration.moe.expertCount, ranks: dataParallelSize,
                                                redundantExperts: redundantExperts)
            } catch let error as PlacementError {
                throw ValidationError("--data-parallel-size \(dataParallelSize): \(error)")
            }
            let slots = modelConfiguration.moe.expertCount + redundantExperts
            let limits = ElasticController.Limits(experts: modelConfiguration.moe.expertCount,
                                                  slotsPerRank: slots / dataParallelSize, maximumSize: elasticMaximumSize,
                                                  prepareTimeout: .milliseconds(Int64(elasticPrepareTimeout * 1000)))
            var autoscale: AutoscalePolicy.Configuration?
            if autoscales {
                do {
                    autoscale = try AutoscalePolicy.Configuration(
                        minSize: elasticMinimumSize, maxSize: elasticMaximumSize, minimumForExperts: limits.minimumSize,
                        targetRequestsPerRank: autoscaleTarget, upWindow: .milliseconds(Int64(autoscaleUpWindow * 1000)),
                        downWindow: .milliseconds(Int64(autoscaleDownWindow * 1000)),
                        cooldown: .milliseconds(Int64(autoscaleCooldown * 1000)))
                } catch {
                    throw ValidationError(error.description)
                }
            }
            let token = joinToken ?? ProcessInfo.processInfo.environment["FLEXPERT_JOIN_TOKEN"]
                ?? (0..<4).map { _ in String(UInt64.random(in: 0 ... .max), radix: 16) }.joined()
            let coordinator = try Coordinator(
                host: coordinatorHost, storePort: coordinatorPort, token: token,
                configuration: RankConfiguration(
                    size: dataParallelSize, redundantExperts: redundantExperts, eplbWindowSize: eplbWindowSize,
                    eplbLogInterval: eplbLogInterval,
                    eplbStepInterval: enablesEPLB ? eplbStepInterval : nil, eplbLayersPerStep: eplbLayersPerStep,
                    model: URL(fileURLWithPath: folder).standardizedFileURL.path, loadFormat: LoadFormat(rawValue: loadFormat)!,
                    device: device, blockSize: blockSize, maxBatchedTokens: steps.maxBatchedTokens,
                    maxSequences: steps.maxSequences, maxModelLength: length,
                    kvCacheMemoryBytes: kvCacheMemory.flatMap(parseByteCount), gpuMemoryUtilization: gpuMemoryUtilization,
                    cpuThreads: cpuThreads ?? max(1, ProcessInfo.processInfo.activeProcessorCount / max(1, localRanks ?? dataParallelSize)),
                    frontEnd: "", collectiveTimeoutSeconds: collectiveTimeout, prepareTimeoutSeconds: elasticPrepareTimeout,
                    all2allBackend: all2allBackend, healsLostRanks: enablesElasticEP, cachesPrefixes: enablesPrefixCaching),
                heartbeatTimeout: heartbeatTimeout > 0 ? .milliseconds(Int64(heartbeatTimeout * 1000)) : nil)
            let address = "\(coordinatorHost):\(coordinator.store.port)"
            FileHandle.standardOutput.write(Data(("flexpert: coordinator on \(address), waiting for \(dataParallelSize) ranks "
                + "(rank connections to \(coordinator.configuration.frontEnd))\n").utf8))
            let children = try LocalRanks(count: localRanks ?? dataParallelSize, coordinator: address, token: token)
            let ranks: [RemoteRank]
            do {
                ranks = try coordinator.waitForRanks(deadline: .now + .seconds(300)) { children.problem }
            } catch {
                coordinator.close()
                children.stop(grace: 0)
                throw error
            }
            let affinity = enablesPrefixCaching && routingPolicy == .prefix
                ? PrefixAffinity(blockSize: blockSize, margin: prefixRoutingMargin) : nil
            let router = RankRouter(ranks: ranks, heals: enablesElasticEP, affinity: affinity)
            engine = router
            let newcomers = NewcomerProcesses()
            if enablesElasticEP {
                elastic = ElasticController(coordinator: coordinator, router: router, limits: limits, autoscale: autoscale,
                                            replacesFailed: replacesFailed) { [launcher] generation, ranks in
                    let started: any RankProcesses = if let launcher {
                        try LaunchedRanks(command: launcher, ranks: ranks, generation: generation, coordinator: address, token: token)
                    } else {
                        try LocalRanks(count: ranks.count, coordinator: address, token: token, generation: generation)
                    }
                    newcomers.add(started)
                    return started
                }
            } else {
                elastic = nil
            }
            cleanup = {
                coordinator.close()
                children.stop(grace: 10)
                newcomers.stop()
            }
            summary = "on \(dataParallelSize) ranks (\(device.rawValue)), \(modelConfiguration.moe.expertCount + redundantExperts) "
                + "expert slots per layer split over them"
        }
        defer { cleanup() }

        let names = servedModelNames.isEmpty ? [model.map { URL(fileURLWithPath: $0).lastPathComponent } ?? DefaultModel.name]
            : servedModelNames
        let frontEnd = FrontEnd(
            engine: engine, tokenizer: tokenizer, chatTemplating: ChatTemplating(configuration: tokenizerConfiguration, override: override),
            chatOptions: ChatOptions(reasoningParser: reasoningParser.flatMap(ReasoningParser.init(rawValue:)),
                                     toolCallParser: toolCallParser.flatMap(ToolCallParser.init(rawValue:)),
                                     enablesAutoToolChoice: enablesAutoToolChoice, trustsRequestChatTemplate: trustsRequestChatTemplate),
            eosTokenIDs: eos,
            limits: ServingLimits(maxModelLength: length, vocabularySize: modelConfiguration.decoder.vocabularySize,
                                  maxChoicesPerRequest: maxChoicesPerRequest),
            modelNames: names, metrics: ServingMetrics(modelName: names[0]))
        let key = apiKey ?? ProcessInfo.processInfo.environment["FLEXPERT_API_KEY"].flatMap { $0.isEmpty ? nil : $0 }
        let adminKey = adminAPIKey ?? ProcessInfo.processInfo.environment["FLEXPERT_ADMIN_API_KEY"].flatMap { $0.isEmpty ? nil : $0 }
        let configuration = APIServerConfiguration(
            host: host, port: port, apiKey: key, adminAPIKey: adminKey, maxBodyBytes: maxBodyBytes,
            timeouts: HTTPTimeouts(headerRead: .seconds(headerReadTimeout), bodyRead: .seconds(bodyReadTimeout),
                                   keepAlive: .seconds(keepAliveTimeout)),
            shutdownTimeout: .seconds(shutdownTimeout), scaling: elastic)
        let line = "model \(names[0]) \(summary), max model length \(length)"
        let host = host
        try await APIServer.serve(frontEnd: frontEnd, configuration: configuration) { port in
            // Unbuffered, so that a parent process reading the pipe sees the port at once.
            FileHandle.standardOutput.write(Data("flexpert: serving \(line)\nflexpert: listening on http://\(host):\(port)\n".utf8))
        }
    }
}

extension ServeCommand {
    /// `--max-num-batched-tokens` and `--max-num-seqs` as given, else by the first GPU this machine
    /// sees (every rank, here or joining, gets the same, so that their step buffers agree); a front
    /// end on a machine without one (its ranks all elsewhere) takes the smaller defaults.
    func stepLimits() throws -> StepLimits {
        var device = StepLimits.Device.cpu
        if self.device == .cuda, maxBatchedTokens == nil || maxSequences == nil, let gpu = try? CUDABackend.describeDevice() {
            device = .gpu(name: gpu.name, memoryBytes: gpu.memoryBytes)
        }
        let defaults = StepLimits.defaults(for: device)
        return StepLimits(maxBatchedTokens: maxBatchedTokens ?? defaults.maxBatchedTokens,
                          maxSequences: maxSequences ?? defaults.maxSequences)
    }
}

/// "1073741824", "512MiB", "4GiB", "2GB" → bytes.
func parseByteCount(_ text: String) -> Int? {
    let units: [(String, Int)] = [("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("KB", 1000), ("MB", 1_000_000),
                                  ("GB", 1_000_000_000), ("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30), ("B", 1)]
    for (suffix, scale) in units where text.hasSuffix(suffix) {
        guard let value = Double(text.dropLast(suffix.count)), value > 0 else { return nil }
        return Int(value * Double(scale))
    }
    return Int(text).flatMap { $0 > 0 ? $0 : nil }
}

/// Every newcomer process a scale-up started, stopped with the server.
private final class NewcomerProcesses: Sendable {
    private let started = Mutex<[any RankProcesses]>([])

    func add(_ ranks: any RankProcesses) { started.withLock { $0.append(ranks) } }

    func stop() {
        for ranks in started.withLock({ $0 }) { ranks.stop(grace: 10) }
    }
}
