public import Compute
public import Experts
import Models
import Transport

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

    /// - Parameter experts: this rank's expert weights by decoder layer (`nil` for dense layers).
    /// - Parameter expertGroups: the model's expert groups, which the balancer's hierarchical policy keeps together.
    public init(dispatch: ExpertParallelDispatch, experts: [ExpertWeights?], backend: any Backend, layersPerStep: Int, expertGroups: Int = 1) {
        precondition(layersPerStep >= 1, "a move takes at least one layer per step")
        self.expertGroups = expertGroups
        self.dispatch = dispatch
        self.experts = experts
        self.backend = backend
        self.layersPerStep = layersPerStep
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
        guard totals.contains(where: { $0 > 0 }), let ranks = dispatch.placements.compactMap({ $0 }).first?.rankCount else {
            return 0
        }
        let placement = try ElasticPlacement.plan(current: dispatch.placements, totals: totals, newSize: ranks, groups: expertGroups)
        plannedBalancedness = placement.expectedBalancedness
        start(targets: placement.target)
        guard case .moving(_, let remaining) = state else { return 0 }
        rearrangementCount += 1
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
        moveSeconds += elapsed.seconds
        return now
    }

    private func move(layer: Int, to target: ExpertPlacement, timeout: Duration) throws {
        guard let weights = experts[layer], let current = dispatch.placements[layer] else {
            throw TransportError.protocolViolation("layer \(layer) has no experts to move")
        }
        let transfers = ExpertMovePlan.transfers(from: current, to: target)
        writing = (layer, transfers.filter { $0.destination == dispatch.group.rank }.map(\.destinationSlot))
        receivedExpertCount += try ExpertWeightExchange.run(transfers, weights: weights, group: dispatch.group, backend: backend,
                                                           timeout: timeout, peer: dispatch.exchange?.peerMemory)
        try dispatch.switchPlacement(target, layer: layer)
        writing = nil
    }

    /// The layer a move is writing into this rank's slots of, and those slots (rows), until its
    /// routing switches: if the move breaks off, what they hold is no expert's.
    private var writing: (layer: Int, slots: [Int])?

    /// Gives up the move under way (its group broke: a peer was lost). Returns the slots of this
    /// rank that a broken-off layer move left holding no expert's weights.
    public func abandonMove() -> (layer: Int, slots: [Int])? {
        state = .idle
        defer { writing = nil }
        return writing
    }

}
