import FrontEnd
import Messages
import OpenAIAPI

extension ScaleStatus {
    /// The body of `GET /elastic_ep/status`, with vLLM's field names.
    var json: JSONValue {
        .object([
            ("operation_id", operationID.map { .string($0) } ?? .null),
            ("phase", .string(phase.rawValue)),
            ("current_size", .int(currentSize)),
            ("target_size", targetSize.map { .int($0) } ?? .null),
            ("started_at", startedAt.map { .number($0) } ?? .null),
            ("last_error", lastError.map { .string($0) } ?? .null),
            ("timings", .object(timings.sorted { $0.key < $1.key }.map { ($0.key, .number($0.value)) })),
            ("autoscale", autoscale.map { autoscale in
                .object([("min_size", .int(autoscale.minSize)), ("max_size", .int(autoscale.maxSize)),
                         ("scale_ups", .int(autoscale.scaleUps)), ("scale_downs", .int(autoscale.scaleDowns)),
                         ("last_decision", autoscale.lastDecision.map { .string($0) } ?? .null),
                         ("last_decision_at", autoscale.lastDecisionAt.map { .number($0) } ?? .null)])
            } ?? .null),
            ("recovery", recovery.map { recovery in
                .object([("rank_failures", .int(recovery.rankFailures)), ("recoveries", .int(recovery.recoveries)),
                         ("recovery_seconds_total", .number(recovery.recoverySeconds)),
                         ("last_recovery_seconds", recovery.lastRecoverySeconds.map { .number($0) } ?? .null),
                         ("last_event", recovery.lastEvent.map { .string($0) } ?? .null)])
            } ?? .null),
        ])
    }
}
