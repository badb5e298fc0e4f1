import Compute
import Foundation
public import Messages
import Synchronization

/// The server's Prometheus metrics, named as vLLM names them (`vllm:` becomes `flexpert:`) so
/// that dashboards carry over. Written by HTTP handler tasks, read by `/metrics`; one lock.
public final class ServingMetrics: Sendable {
    private struct State {
        var requestsReceived = 0
        var promptTokens = 0
        var generationTokens = 0
        var finished: [String: Int] = [:]
        var httpResponses: [String: Int] = [:]
        var timeToFirstToken = Histogram(bounds: ServingMetrics.latencyBounds)
        var timePerOutputToken = Histogram(bounds: ServingMetrics.tokenBounds)
        var interTokenLatency = Histogram(bounds: ServingMetrics.tokenBounds)
        var endToEndLatency = Histogram(bounds: ServingMetrics.latencyBounds)
    }

    public static let latencyBounds = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20,
                                40, 80, 160, 640, 2560]
    public static let tokenBounds = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75,
                              1, 2.5, 5, 7.5, 10, 20, 40, 80]

    private let state = Mutex(State())
    private let labels: String

    public init(modelName: String) {
        labels = "model_name=\"\(Self.escape(modelName))\""
    }

    public func requestArrived(promptTokens: Int) {
        state.withLock {
            $0.requestsReceived += 1
            $0.promptTokens += promptTokens
        }
    }

    public func tokenArrived(timeToFirst: Duration?, interToken: Duration?) {
        state.withLock {
            $0.generationTokens += 1
            if let timeToFirst { $0.timeToFirstToken.observe(timeToFirst.seconds) }
            if let interToken { $0.interTokenLatency.observe(interToken.seconds) }
        }
    }

    public func choiceFinished(reason: String, latency: Duration, timePerOutputToken: Duration?) {
        state.withLock {
            $0.finished[reason, default: 0] += 1
            $0.endToEndLatency.observe(latency.seconds)
            if let timePerOutputToken { $0.timePerOutputToken.observe(timePerOutputToken.seconds) }
        }
    }

    public func responded(path: String, status: Int) {
        state.withLock { $0.httpResponses["path=\"\(Self.escape(path))\",status=\"\(status)\"", default: 0] += 1 }
    }

    /// The exposition text, with the engines' gauges labelled by rank, and with `elastic` (a
    /// server that scales) its size and the autoscaler's decisions.
    public func render(engines: [EngineStatistics], elastic: ScaleStatus? = nil) -> String {
        let snapshot = state.withLock { $0 }
        var text = ""
        func family(_ name: String, _ type: String, _ help: String) {
            text += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
        }
        func single(_ name: String, _ type: String, _ help: String, _ value: String) {
            family(name, type, help)
            text += "\(name){\(labels)} \(value)\n"
        }
        func perEngine(_ name: String, _ type: String, _ help: String, _ value: (EngineStatistics) -> String) {
            family(name, type, help)
            for (rank, engine) in engines.enumerated() { text += "\(name){\(labels),rank=\"\(rank)\"} \(value(engine))\n" }
        }
        perEngine("flexpert:num_requests_running", "gauge", "Sequences in the running set of each engine.") { "\($0.runningCount)" }
        perEngine("flexpert:num_requests_waiting", "gauge", "Sequences waiting to be scheduled on each engine.") { "\($0.waitingCount)" }
        perEngine("flexpert:kv_cache_usage_perc", "gauge", "Fraction of KV cache blocks in use (1 is full).") { "\($0.cacheUsage)" }
        perEngine("flexpert:num_preemptions_total", "counter", "Sequences preempted to free KV cache blocks.") { "\($0.preemptionCount)" }
        perEngine("flexpert:prefix_cache_queries_total", "counter", "Prompt tokens each engine looked up in its prefix cache.") {
            "\($0.prefixQueryTokens)"
        }
        perEngine("flexpert:prefix_cache_hits_total", "counter", "Prompt tokens each engine found in its prefix cache.") {
            "\($0.prefixHitTokens)"
        }
        perEngine("flexpert:prefix_cache_hit_rate", "gauge", "Each engine's prefix cache hits over queries, in tokens, since it started.") {
            "\($0.prefixHitRate)"
        }
        perEngine("flexpert:engine_steps_total", "counter", "Forward steps run by each engine.") { "\($0.stepCount)" }
        perEngine("flexpert:engine_step_seconds", "gauge", "Duration of each engine's last step.") { "\($0.lastStepSeconds)" }
        perEngine("flexpert:engine_generation_tokens_total", "counter", "Tokens sampled by each engine.") { "\($0.generatedTokenCount)" }
        perEngine("flexpert:engine_requests_finished_total", "counter", "Requests each engine ended.") { "\($0.finishedRequestCount)" }
        perEngine("flexpert:all_to_all_bytes_total", "counter", "Expert-parallel bytes each rank sent over a host-planned transport (nccl, host); the ipc exchange runs on the device and is not counted.") { "\($0.exchangedBytes)" }
        perEngine("flexpert:expert_balancedness", "gauge", "Mean over max rank load of routed tokens in the EPLB window.") {
            "\($0.expertBalancedness)"
        }
        perEngine("flexpert:eplb_rearrangements_total", "counter", "Expert rearrangements each rank planned.") {
            "\($0.expertRearrangements)"
        }
        perEngine("flexpert:eplb_experts_received_total", "counter", "Expert copies each rank received in rearrangements.") {
            "\($0.expertsReceived)"
        }
        perEngine("flexpert:eplb_move_seconds_total", "counter", "Seconds each rank spent moving expert weights.") {
            "\($0.expertMoveSeconds)"
        }
        perEngine("flexpert:all_to_all_seconds_total", "counter", "Seconds each rank spent in host-planned expert-parallel exchanges (not ipc, whose time is the GPU's).") {
            "\($0.exchangeSeconds)"
        }
        if let elastic { single("flexpert:elastic_ep_size", "gauge", "Ranks the cluster serves on.", "\(elastic.currentSize)") }
        if let autoscale = elastic?.autoscale {
            family("flexpert:autoscale_decisions_total", "counter", "Scales the autoscaler decided, by direction.")
            text += "flexpert:autoscale_decisions_total{\(labels),direction=\"up\"} \(autoscale.scaleUps)\n"
            text += "flexpert:autoscale_decisions_total{\(labels),direction=\"down\"} \(autoscale.scaleDowns)\n"
        }
        if let recovery = elastic?.recovery {
            single("flexpert:elastic_ep_rank_failures_total", "counter", "Ranks lost while serving.", "\(recovery.rankFailures)")
            single("flexpert:elastic_ep_recoveries_total", "counter", "Recoveries from lost ranks completed.", "\(recovery.recoveries)")
            single("flexpert:elastic_ep_recovery_seconds_total", "counter", "Seconds from losses to the group serving again.",
                   "\(recovery.recoverySeconds)")
        }
        single("flexpert:requests_received_total", "counter", "Generation requests accepted by the server.", "\(snapshot.requestsReceived)")
        single("flexpert:prompt_tokens_total", "counter", "Prompt tokens of accepted requests.", "\(snapshot.promptTokens)")
        single("flexpert:generation_tokens_total", "counter", "Generated tokens.", "\(snapshot.generationTokens)")
        family("flexpert:request_success_total", "counter", "Finished choices by finish reason.")
        for reason in ["stop", "length", "abort", "error"] {
            text += "flexpert:request_success_total{\(labels),finished_reason=\"\(reason)\"} \(snapshot.finished[reason, default: 0])\n"
        }
        family("flexpert:http_responses_total", "counter", "HTTP responses by path and status.")
        for (key, count) in snapshot.httpResponses.sorted(by: { $0.key < $1.key }) {
            text += "flexpert:http_responses_total{\(labels),\(key)} \(count)\n"
        }
        family("flexpert:time_to_first_token_seconds", "histogram", "Time from arrival to the first generated token.")
        snapshot.timeToFirstToken.write(name: "flexpert:time_to_first_token_seconds", labels: labels, into: &text)
        family("flexpert:time_per_output_token_seconds", "histogram", "Mean time per generated token after the first, per choice.")
        snapshot.timePerOutputToken.write(name: "flexpert:time_per_output_token_seconds", labels: labels, into: &text)
        family("flexpert:inter_token_latency_seconds", "histogram", "Time between consecutive generated tokens.")
        snapshot.interTokenLatency.write(name: "flexpert:inter_token_latency_seconds", labels: labels, into: &text)
        family("flexpert:e2e_request_latency_seconds", "histogram", "Time from arrival to the last token, per choice.")
        snapshot.endToEndLatency.write(name: "flexpert:e2e_request_latency_seconds", labels: labels, into: &text)
        return text
    }

    private static func escape(_ value: String) -> String {
        value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
    }
}
