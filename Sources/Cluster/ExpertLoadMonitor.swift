public import Distributed
import Foundation
public import Parallelism

/// Keeps a rank's window of expert loads and, every `logInterval` steps, adds all ranks' windows
/// together (a collective: every rank calls it at the same step) to compute the balancedness
/// (mean rank load / max rank load), which it logs and reports.
///
/// Owned by the rank's step loop.
public final class ExpertLoadMonitor {
    private let dispatch: ExpertParallelDispatch
    private var window: ExpertLoadWindow
    private let logInterval: Int
    private var stepsSinceReport = 0
    public private(set) var balancedness = 1.0

    public init(dispatch: ExpertParallelDispatch, windowSize: Int, logInterval: Int) {
        self.dispatch = dispatch
        let width = dispatch.placements.compactMap { $0 }.count * dispatch.slotsPerLayer
        window = ExpertLoadWindow(capacity: max(1, windowSize), width: width)
        self.logInterval = max(1, logInterval)
    }

    /// Takes the step's counts into the window (a padding step's token is not load).
    public func afterStep(padding: Bool) {
        let counts = dispatch.takeStepCounts()
        if !padding { window.record(counts) }
        stepsSinceReport += 1
    }

    public var isReportDue: Bool { stepsSinceReport >= logInterval }

    /// The global balancedness of the window; logs it on rank 0.
    public func report(group: StatelessGroup, timeout: Duration) throws {
        stepsSinceReport = 0
        let totals = try group.allReduce(window.totals, .sum, timeout: timeout)
        balancedness = ExpertLoadWindow.balancedness(totals, slotsPerLayer: dispatch.slotsPerLayer, ranks: group.size)
        if group.rank == 0 {
            let tokens = totals.reduce(0, +)
            FileHandle.standardError.write(Data(String(
                format: "flexpert engine: expert balancedness %.3f over the last %d steps (%lld routed tokens)\n",
                balancedness, window.capacity, tokens).utf8))
        }
    }
}
