/// Expert placements for a change of the number of ranks (or, with the same number, EPLB's periodic
/// rebalance: then the target is the new balance and the intermediate the current placement).
/// Slots per rank never change, so N ranks
/// hold N·S slots and M ranks M·S. Every rank computes these from the same all-reduced loads, so
/// all agree on them without a word exchanged.
///
/// Scale up N → M: the target is DeepSeek's placement for M ranks (experts that stay on a rank
/// keep their slots); the intermediate placement is what the M ranks hold at the commit: the old
/// ranks' slots as they were, the new ranks' slots as in the target. EPLB then moves the old ranks
/// to the target while serving.
///
/// Scale down N → M: the target is the placement for the M staying ranks; the intermediate one
/// (still on N ranks, moved into while serving over the old group) has the staying ranks' slots
/// as in the target and the leaving ranks' slots unchanged, so every expert has a copy on a staying
/// rank before any rank leaves. Down to one rank with a slot per expert, the target is the experts
/// in logical order: that rank then runs its layers locally (``ExpertParallelDispatch/isLocal``),
/// which is worth the moves within it.
public struct ElasticPlacement: Sendable, Equatable {
    /// By decoder layer (`nil` for dense layers).
    public let intermediate: [ExpertPlacement?]
    public let target: [ExpertPlacement?]
    /// What the balancer expects of the target for the loads it planned with (mean over layers).
    public let expectedBalancedness: Double

    /// - Parameters:
    ///   - current: the N ranks' placements by decoder layer.
    ///   - totals: tokens per physical slot, MoE layer after MoE layer (all ranks' windows added).
    ///   - groups: the model's expert groups (DeepSeek-V3's `n_group`), which DeepSeek's hierarchical
    ///     policy keeps together on a node.
    public static func plan(current: [ExpertPlacement?], totals: [Int64], newSize: Int, groups: Int = 1) throws -> ElasticPlacement {
        let layers = current.indices.filter { current[$0] != nil }
        guard let first = layers.first.flatMap({ current[$0] }) else {
            return ElasticPlacement(intermediate: current, target: current, expectedBalancedness: 1)
        }
        let experts = first.logicalExpertCount, perRank = first.slotsPerRank
        let oldSize = first.rankCount, oldSlots = oldSize * perRank, newSlots = newSize * perRank
        precondition(totals.count == layers.count * oldSlots, "loads must cover every slot of every MoE layer")
        guard newSlots >= experts else { throw PlacementError.tooFewSlots(ranks: newSize, slotsPerRank: perRank, experts: experts) }
        // One token added to every expert: with no load measured yet, copies still spread evenly.
        let weight = layers.enumerated().map { index, layer in
            var loads = [Double](repeating: 1, count: experts)
            for slot in 0..<oldSlots { loads[current[layer]!.physicalToLogical[slot].index] += Double(totals[index * oldSlots + slot]) }
            return loads
        }
        let balanced = try ExpertLoadBalancer.rebalance(weight: weight, replicas: newSlots, groups: groups, nodes: 1, gpus: newSize)
        let previous = layers.map { layer -> [Int] in
            let old = current[layer]!.physicalToLogical.map(\.index)
            return newSize >= oldSize ? old + [Int](repeating: -1, count: newSlots - oldSlots) : Array(old.prefix(newSlots))
        }
        let kept = ExpertLoadBalancer.preservingSlots(balanced, previous: previous, gpus: newSize)
        var intermediate = current, target = current
        var expected = 0.0
        for (index, layer) in layers.enumerated() {
            let inOrder = newSize == 1 && newSlots == experts
            let goal = (inOrder ? Array(0..<experts) : kept.physicalToLogical[index]).map { LogicalExpert($0) }
            let old = current[layer]!.physicalToLogical
            // The target routes by the balancer's replica order; the intermediate mixes old and new slots, in slot order.
            let order = inOrder ? nil : zip(kept.logicalToPhysical[index], kept.logicalCount[index]).map { $0.prefix($1).map { PhysicalSlot($0) } }
            target[layer] = try ExpertPlacement(logicalExpertCount: experts, rankCount: newSize, physicalToLogical: goal,
                                                replicaOrder: order)
            expected += ExpertLoadBalancer.balancedness(weight: weight[index], physicalToLogical: goal.map(\.index),
                                                        logicalCount: kept.logicalCount[index], gpus: newSize)
            intermediate[layer] = newSize >= oldSize
                ? try ExpertPlacement(logicalExpertCount: experts, rankCount: newSize,
                                      physicalToLogical: old + goal[oldSlots...])
                : try ExpertPlacement(logicalExpertCount: experts, rankCount: oldSize,
                                      physicalToLogical: goal + old[newSlots...])
        }
        return ElasticPlacement(intermediate: intermediate, target: target,
                                expectedBalancedness: expected / Double(layers.count))
    }

    /// The smallest number of ranks whose slots hold every expert.
    public static func minimumSize(experts: Int, slotsPerRank: Int) -> Int { (experts + slotsPerRank - 1) / slotsPerRank }
}
