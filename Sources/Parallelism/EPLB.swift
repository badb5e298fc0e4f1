public import Experts
import Foundation
public import Transport

/// A rank's expert load balancing, run at every step boundary of the group's lockstep loop:
/// keeps the window of expert loads; every `logInterval` steps adds all ranks' windows together
/// and logs the balancedness (mean rank load / max rank load); every `stepInterval` steps (when a
/// ``ExpertRebalancer`` is given) plans a new placement from the same global window, then moves
/// one batch of layers per step until the move is done.
///
/// Every decision depends only on the step count and on all-reduced figures, so every rank makes
/// the same collective calls at the same step. Owned by the rank's step loop.
public final class EPLB {
    private let dispatch: ExpertParallelDispatch
    public let rebalancer: ExpertRebalancer?
    private var window: ExpertLoadWindow
    /// Steps per record of the window: 1 when the host counts; when the device does, the counts
    /// are read (a wait for the device) only every this many steps, each read one record.
    private var countInterval: Int
    /// Steps the window covers.
    private let windowSize: Int
    private let logInterval: Int
    private let stepInterval: Int?
    private var stepCount = 0
    public private(set) var balancedness = 1.0
    /// While a reconfiguration runs, no rebalance is planned (it moves experts by its own plan).
    public var isPaused = false
    /// This rank's window, for a reconfiguration to plan with (all-reduced by the caller), with
    /// what the device counted since its last read.
    public func currentWindowTotals() throws -> [Int64] {
        if dispatch.countsOnDevice { window.addToNewest(try dispatch.takeStepCounts()) }
        return window.totals
    }

    /// - Parameter stepInterval: steps between rebalances (`nil`: none; the rebalancer then only
    ///   carries out the moves of reconfigurations). Steps count from the last commit, so that every
    ///   rank, newcomers included, runs the same collectives at the same step.
    public init(dispatch: ExpertParallelDispatch, rebalancer: ExpertRebalancer?, windowSize: Int, logInterval: Int,
                stepInterval: Int?) {
        self.dispatch = dispatch
        self.rebalancer = rebalancer
        self.logInterval = max(1, logInterval)
        self.stepInterval = stepInterval.map { max(1, $0) }
        self.windowSize = max(1, windowSize)
        countInterval = 1
        window = ExpertLoadWindow(capacity: 1, width: 0)
        startWindow()
    }

    /// A window for the dispatch as it is now: its width, and how often its counts are read.
    private func startWindow() {
        countInterval = dispatch.countsOnDevice ? max(1, [logInterval, stepInterval ?? logInterval, windowSize].min()!) : 1
        window = ExpertLoadWindow(capacity: max(1, windowSize / countInterval), width: dispatch.moeLayers.count * dispatch.slotsPerLayer)
    }

    /// Rearrangements planned, expert copies received here, seconds spent moving (metrics).
    public var rearrangementCount: Int { rebalancer?.rearrangementCount ?? 0 }
    public var receivedExpertCount: Int { rebalancer?.receivedExpertCount ?? 0 }
    public var moveSeconds: Double { rebalancer?.moveSeconds ?? 0 }

    /// After each lockstep step: records the step's loads (a padding step's token is not load),
    /// then runs whatever collective is due.
    public func afterStep(padding: Bool, group: StatelessGroup, timeout: Duration) throws {
        stepCount += 1
        if !dispatch.countsOnDevice {
            let counts = try dispatch.takeStepCounts()
            if !padding { window.record(counts) }
        } else if stepCount % countInterval == 0 {
            // The device leaves padding tokens out itself.
            window.record(try dispatch.takeStepCounts())
        } else if isMoving || stepCount % logInterval == 0 || stepInterval.map({ stepCount % $0 == 0 }) == true {
            // Before a move, what was counted on the old slots goes in (the moved layers' columns
            // are cleared below); before a plan or a log, what was counted since the last read.
            window.addToNewest(try dispatch.takeStepCounts())
        }
        if let rebalancer {
            if rebalancer.isMoving {
                for layer in try rebalancer.moveNextLayers(timeout: timeout) {
                    let index = dispatch.moeLayers.firstIndex(of: layer)!
                    window.clear((index * dispatch.slotsPerLayer)..<((index + 1) * dispatch.slotsPerLayer))
                }
            } else if let stepInterval, stepCount % stepInterval == 0 && !isPaused {
                let totals = try group.allReduce(window.totals, .sum, timeout: timeout)
                let layers = try rebalancer.plan(totals: totals)
                if group.rank == 0 && layers > 0 {
                    log(String(format: "rearranging experts of %d layers: balancedness %.3f now, %.3f expected",
                               layers, balance(totals, group), rebalancer.plannedBalancedness))
                }
            }
        }
        if stepCount % logInterval == 0 {
            let totals = try group.allReduce(window.totals, .sum, timeout: timeout)
            balancedness = balance(totals, group)
            // A rank that runs its experts locally routes nothing through the dispatch: nothing to report.
            if group.rank == 0 && !dispatch.isLocal {
                log(String(format: "expert balancedness %.3f over the last %d steps (%lld routed tokens)",
                           balancedness, window.capacity * countInterval, totals.reduce(0, +)))
            }
        }
    }

    /// The dispatch's group or slots changed (a commit): the window starts again at the new width.
    public func dispatchReconfigured() {
        stepCount = 0
        startWindow()
    }

    /// Whether a move is under way, which keeps every rank stepping until it is done.
    public var isMoving: Bool { rebalancer?.isMoving ?? false }

    /// Starts moving to `targets` (a reconfiguration's plan).
    public func move(to targets: [ExpertPlacement?]) {
        rebalancer?.start(targets: targets)
    }

    private func balance(_ totals: [Int64], _ group: StatelessGroup) -> Double {
        ExpertLoadWindow.balancedness(totals, slotsPerLayer: dispatch.slotsPerLayer, ranks: group.size)
    }

    private func log(_ line: String) {
        FileHandle.standardError.write(Data("flexpert engine: \(line)\n".utf8))
    }
}
