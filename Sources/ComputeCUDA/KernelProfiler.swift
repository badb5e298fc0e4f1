/// GPU time per kernel name, measured with a pair of events around each launch. Timing waits for
/// each launch to finish, so it is for finding where a step's time goes, never for serving.
public final class KernelProfiler {
    public struct Entry: Sendable {
        public let name: String
        public let calls: Int
        public let milliseconds: Double
    }

    private let driver: CUDADriver
    private let start: OpaquePointer?
    private let end: OpaquePointer?
    private var totals: [String: (calls: Int, milliseconds: Double)] = [:]

    init(driver: CUDADriver) throws {
        self.driver = driver
        var start: OpaquePointer?, end: OpaquePointer?
        try driver.check(driver.cuEventCreate(&start, 0), "cuEventCreate")
        try driver.check(driver.cuEventCreate(&end, 0), "cuEventCreate")
        self.start = start
        self.end = end
    }

    deinit {
        _ = driver.cuEventDestroy(start)
        _ = driver.cuEventDestroy(end)
    }

    func time(_ name: String, stream: OpaquePointer?, _ work: () throws -> Void) throws {
        try driver.check(driver.cuEventRecord(start, stream), "cuEventRecord")
        try work()
        try driver.check(driver.cuEventRecord(end, stream), "cuEventRecord")
        try driver.check(driver.cuEventSynchronize(end), "cuEventSynchronize")
        var milliseconds: Float = 0
        try driver.check(driver.cuEventElapsedTime(&milliseconds, start, end), "cuEventElapsedTime")
        let total = totals[name] ?? (0, 0)
        totals[name] = (total.calls + 1, total.milliseconds + Double(milliseconds))
    }

    /// Totals since the last reset, most time first.
    public var entries: [Entry] {
        totals.map { Entry(name: $0.key, calls: $0.value.calls, milliseconds: $0.value.milliseconds) }
            .sorted { $0.milliseconds > $1.milliseconds }
    }

    public func reset() { totals.removeAll() }
}
