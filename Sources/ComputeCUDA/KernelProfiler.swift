/// GPU time per kernel name, measured with a pair of events around each launch.
///
/// Outside a graph, timing waits for each launch to finish, so a small kernel's figure includes
/// the host's launch latency. Inside a recorded decode graph the events become graph nodes
/// (recorded with CU_EVENT_RECORD_EXTERNAL), the kernels run back to back as they do when serving,
/// and each replay adds the times of its kernels: the figures a decode step is judged by.
/// For finding where a step's time goes, never for serving (a replay waits for its end).
public final class KernelProfiler {
    public struct Entry: Sendable {
        public let name: String
        public let calls: Int
        public let milliseconds: Double

        public init(name: String, calls: Int, milliseconds: Double) {
            self.name = name
            self.calls = calls
            self.milliseconds = milliseconds
        }
    }

    /// One timed launch inside a recorded graph: its events live as long as the graph.
    struct GraphProbe {
        let name: String
        let start: OpaquePointer?
        let end: OpaquePointer?
    }

    private let driver: CUDADriver
    private let start: OpaquePointer?
    private let end: OpaquePointer?
    private var totals: [String: (calls: Int, milliseconds: Double)] = [:]
    /// Set between the start and the end of a graph capture.
    private var captured: [GraphProbe]?

    init(driver: CUDADriver) throws {
        self.driver = driver
        start = try Self.makeEvent(driver)
        end = try Self.makeEvent(driver)
    }

    deinit {
        _ = driver.cuEventDestroy(start)
        _ = driver.cuEventDestroy(end)
    }

    private static func makeEvent(_ driver: CUDADriver) throws -> OpaquePointer? {
        var event: OpaquePointer?
        try driver.check(driver.cuEventCreate(&event, 0), "cuEventCreate")
        return event
    }

    func time(_ name: String, stream: OpaquePointer?, _ work: () throws -> Void) throws {
        if captured != nil {
            let probe = GraphProbe(name: name, start: try Self.makeEvent(driver), end: try Self.makeEvent(driver))
            captured!.append(probe)
            // CU_EVENT_RECORD_EXTERNAL: a node of the graph, not a dependency marker of the capture.
            try driver.check(driver.cuEventRecordWithFlags(probe.start, stream, 1), "cuEventRecordWithFlags")
            try work()
            try driver.check(driver.cuEventRecordWithFlags(probe.end, stream, 1), "cuEventRecordWithFlags")
            return
        }
        try driver.check(driver.cuEventRecord(start, stream), "cuEventRecord")
        try work()
        try driver.check(driver.cuEventRecord(end, stream), "cuEventRecord")
        try driver.check(driver.cuEventSynchronize(end), "cuEventSynchronize")
        try add(name, from: start, to: end)
    }

    private func add(_ name: String, from start: OpaquePointer?, to end: OpaquePointer?) throws {
        var milliseconds: Float = 0
        try driver.check(driver.cuEventElapsedTime(&milliseconds, start, end), "cuEventElapsedTime")
        let total = totals[name] ?? (0, 0)
        totals[name] = (total.calls + 1, total.milliseconds + Double(milliseconds))
    }

    func beginCapture() { captured = [] }

    /// The probes recorded since ``beginCapture()``; the caller destroys them with ``destroy(_:)``.
    func endCapture() -> [GraphProbe] {
        defer { captured = nil }
        return captured ?? []
    }

    /// Adds the times of one finished replay of a graph recorded with `probes`.
    func collect(_ probes: [GraphProbe]) throws {
        for probe in probes { try add(probe.name, from: probe.start, to: probe.end) }
    }

    static func destroy(_ probes: [GraphProbe], driver: CUDADriver) {
        for probe in probes {
            _ = driver.cuEventDestroy(probe.start)
            _ = driver.cuEventDestroy(probe.end)
        }
    }

    /// Totals since the last reset, most time first.
    public var entries: [Entry] {
        totals.map { Entry(name: $0.key, calls: $0.value.calls, milliseconds: $0.value.milliseconds) }
            .sorted { $0.milliseconds > $1.milliseconds }
    }

    public func reset() { totals.removeAll() }
}
