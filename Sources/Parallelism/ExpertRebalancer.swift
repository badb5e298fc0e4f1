public import Compute
import Distributed
public import Models

/// Moves a rank's experts to the placement DeepSeek's balancer chooses for the measured load, a
/// few layers per step, while the rank serves.
///
/// States: `idle` → ``plan(totals:)`` → `moving` (the layers whose placement changes, in order)
/// → ``moveNextLayers(timeout:)`` at each step boundary until none is left → `idle`. Every rank
/// of the group holds the same state at the same step: the plan comes from all-reduced loads by a
/// deterministic algorithm, and each move is one all-to-all of the weights that
/// ``ExpertMovePlan`` says every rank sends. A layer's routing switches right after its weights
/// arrive, before the next forward, so a forward never sees a half-moved layer.
///
/// Owned by the rank's step loop, like the dispatch and the weights it writes.
public final class ExpertRebalancer {
    public enum State: Equatable {
        case idle
        /// Target placements by decoder layer, and the decoder layers still to move.
        case moving(targets: [ExpertPlacement?], remaining: [Int])
    }

    public private(set) var state = State.idle
    /// Rearrangements that moved experts, expert copies this rank received, and the seconds moves took here.
    public private(set) var rearrangementCount = 0
    public private(set) var receivedExpertCount = 0
    public private(set) var moveSeconds = 0.0
    /// What the balancer expects of the new placement, from the loads it planned with.
    public private(set) var plannedBalancedness = 1.0

    private let dispatch: ExpertParallelDispatch
    private let experts: [ExpertWeights?]
    private let backend: any Backend
    private let layersPerStep: Int
    private let expertGroups: Int

    /// - Parameters:
    ///   - experts: this rank's expert weights by decoder layer (`nil` for dense layers).
    ///   - expertGroups: the model's expert groups (DeepSeek's `n_group`; 1 when it has none).
    public init(dispatch: ExpertParallelDispatch, experts: [ExpertWeights?], backend: any Backend,
                layersPerStep: Int, expertGroups: Int = 1) {
        precondition(layersPerStep >= 1, "a move takes at least one layer per step")
        self.dispatch = dispatch
        self.experts = experts
        self.backend = backend
        self.layersPerStep = layersPerStep
        self.expertGroups = expertGroups
    }

    public var isMoving: Bool { state != .idle }

    /// Starts moving to `targets` (by decoder layer; `nil` leaves a layer as it is), as a
    /// reconfiguration asks: the layers whose placement differs move one batch per step.
    public func start(targets: [ExpertPlacement?]) {
        precondition(state == .idle && targets.count == dispatch.placements.count, "a move starts from rest")
        let remaining = targets.indices.filter { targets[$0] != nil && targets[$0] != dispatch.placements[$0] }
        if !remaining.isEmpty { state = .moving(targets: targets, remaining: remaining) }
    }

    /// Chooses each MoE layer's placement for `totals` (every rank's window added: tokens per
    /// physical slot, MoE layer after MoE layer) and starts moving the layers that change.
    /// Returns how many layers will move; with no load measured, nothing moves.
    @discardableResult
    public func plan(totals: [Int64]) throws -> Int {
        precondition(state == .idle, "a plan starts when the previous move is done")
        let layers = dispatch.moeLayers, slots = dispatch.slotsPerLayer
        precondition(totals.count == layers.count * slots, "loads must cover every slot of every MoE layer")
        guard totals.contains(where: { $0 > 0 }), let first = dispatch.placements[layers[0]] else { return 0 }
        let experts = first.logicalExpertCount, ranks = first.rankCount
        let current = layers.map { dispatch.placements[$0]! }
        let weight = current.enumerated().map { index, placement in
            var loads = [Double](repeating: 0, count: experts)
            for slot in 0..<slots { loads[placement.physicalToLogical[slot]] += Double(totals[index * slots + slot]) }
            return loads
        }
        let balanced = try ExpertLoadBalancer.rebalance(weight: weight, replicas: slots,
                                                        groups: experts % expertGroups == 0 ? expertGroups : 1,
                                                        nodes: 1, gpus: ranks)
        let kept = ExpertLoadBalancer.preservingSlots(balanced, previous: current.map(\.physicalToLogical), gpus: ranks)
        var targets = [ExpertPlacement?](repeating: nil, count: dispatch.placements.count)
        var remaining: [Int] = []
        var expected = 0.0
        for (index, layer) in layers.enumerated() {
            let target = try ExpertPlacement(logicalExpertCount: experts, rankCount: ranks,
                                             physicalToLogical: kept.physicalToLogical[index])
            expected += ExpertLoadBalancer.balancedness(weight: weight[index], physicalToLogical: target.physicalToLogical,
                                                        logicalCount: kept.logicalCount[index], gpus: ranks)
            guard target != current[index] else { continue }
            targets[layer] = target
            remaining.append(layer)
        }
        plannedBalancedness = expected / Double(layers.count)
        if !remaining.isEmpty {
            rearrangementCount += 1
            state = .moving(targets: targets, remaining: remaining)
        }
        return remaining.count
    }

    /// Moves the next layers' experts (a collective: every rank calls it at the same step) and
    /// switches their routing. Returns the decoder layers switched.
    public func moveNextLayers(timeout: Duration) throws -> [Int] {
        guard case .moving(let targets, let remaining) = state else { return [] }
        let started = ContinuousClock.now
        let now = Array(remaining.prefix(layersPerStep))
        for layer in now { try move(layer: layer, to: targets[layer]!, timeout: timeout) }
        let rest = Array(remaining.dropFirst(now.count))
        state = rest.isEmpty ? .idle : .moving(targets: targets, remaining: rest)
        let elapsed = ContinuousClock.now - started
        moveSeconds += Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
        return now
    }

    private func move(layer: Int, to target: ExpertPlacement, timeout: Duration) throws {
        guard let weights = experts[layer], let current = dispatch.placements[layer] else {
            throw DistributedError.protocolViolation("layer \(layer) has no experts to move")
        }
        receivedExpertCount += try ExpertWeightExchange.run(ExpertMovePlan.transfers(from: current, to: target),
                                                           weights: weights, group: dispatch.group, backend: backend,
                                                           timeout: timeout)
        dispatch.switchPlacement(target, layer: layer)
    }

}
