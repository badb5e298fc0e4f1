/// DeepSeek's expert-parallel load balancer (EPLB): from each MoE layer's expert loads, choose
/// which experts to replicate and where every physical slot goes so that GPUs (ranks) carry even
/// loads. Hierarchical when the expert groups divide evenly over the nodes (groups stay on one node,
/// replicas stay on their group's node), global otherwise.
///
/// Ties are broken deterministically so that every rank computes the same placement from the same
/// loads: sorts are stable and descending (equal loads keep the lower index first), argmin/argmax
/// take the lowest index.
public enum ExpertLoadBalancer {
    public struct Placement: Sendable, Equatable {
        /// `[layers][physical]`: the logical expert each physical slot holds.
        public let physicalToLogical: [[Int]]
        /// `[layers][logical][maxReplicas]`: each expert's slots by replica rank, padded with −1.
        public let logicalToPhysical: [[[Int]]]
        /// `[layers][logical]`: replicas per expert.
        public let logicalCount: [[Int]]
    }

    public enum InputError: Error, CustomStringConvertible, Equatable {
        case invalid(String)

        public var description: String {
            switch self {
            case .invalid(let detail): detail
            }
        }
    }

    /// - Parameters:
    ///   - weight: `[layers][logical experts]` loads.
    ///   - replicas: physical slots per layer, a multiple of `gpus`, at least the expert count.
    public static func rebalance(weight: [[Double]], replicas: Int, groups: Int, nodes: Int, gpus: Int) throws -> Placement {
        let experts = weight.first?.count ?? 0
        guard !weight.isEmpty, experts > 0, weight.allSatisfy({ $0.count == experts }) else {
            throw InputError.invalid("weight must be a non-empty [layers][experts] matrix with rows of equal length")
        }
        guard weight.allSatisfy({ $0.allSatisfy { $0.isFinite && $0 >= 0 } }) else {
            throw InputError.invalid("loads must be finite and non-negative")
        }
        guard groups >= 1, nodes >= 1, gpus >= 1, replicas >= experts else {
            throw InputError.invalid("need groups, nodes, gpus ≥ 1 and num_replicas (\(replicas)) ≥ experts (\(experts))")
        }
        guard experts % groups == 0 else { throw InputError.invalid("\(experts) experts do not split into \(groups) groups") }
        guard gpus % nodes == 0 else { throw InputError.invalid("\(gpus) GPUs do not split over \(nodes) nodes") }
        guard replicas % gpus == 0 else { throw InputError.invalid("\(replicas) replicas do not split over \(gpus) GPUs") }
        let hierarchical = groups % nodes == 0
        let (physicalToLogical, ranks, counts) = try rebalanceHierarchical(
            weight, replicas: replicas, groups: hierarchical ? groups : 1, nodes: hierarchical ? nodes : 1, gpus: gpus)
        let width = counts.flatMap { $0 }.max() ?? 1
        var logicalToPhysical = weight.map { row in row.map { _ in [Int](repeating: -1, count: width) } }
        for layer in 0..<weight.count {
            for (slot, expert) in physicalToLogical[layer].enumerated() {
                logicalToPhysical[layer][expert][ranks[layer][slot]] = slot
            }
        }
        return Placement(physicalToLogical: physicalToLogical, logicalToPhysical: logicalToPhysical, logicalCount: counts)
    }

    /// `placement` with the slots of each GPU reordered so that every expert it already held (in
    /// `previous`, same slot count) stays in its old slot; only newcomers take the freed slots, in
    /// the new order. GPUs keep the same experts, so balance is unchanged and fewer weights move;
    /// each replica keeps its rank (a replica moves with its slot).
    public static func preservingSlots(_ placement: Placement, previous: [[Int]], gpus: Int) -> Placement {
        guard previous.count == placement.physicalToLogical.count,
              zip(previous, placement.physicalToLogical).allSatisfy({ $0.count == $1.count }) else { return placement }
        var maps: [[Int]] = []
        var tables: [[[Int]]] = []
        for (layer, (old, new)) in zip(previous, placement.physicalToLogical).enumerated() {
            // The replica rank of each new slot, from the balancer's table.
            var replicaRank = [Int](repeating: 0, count: new.count)
            for replicas in placement.logicalToPhysical[layer] {
                for (rank, slot) in replicas.enumerated() where slot >= 0 { replicaRank[slot] = rank }
            }
            let perGPU = new.count / gpus
            var result = new, ranks = replicaRank
            for gpu in 0..<gpus {
                let slots = (gpu * perGPU)..<((gpu + 1) * perGPU)
                var remaining = slots.map { (expert: new[$0], rank: replicaRank[$0]) }
                var taken = [Bool](repeating: false, count: perGPU)
                for slot in slots {
                    if let index = remaining.firstIndex(where: { $0.expert == old[slot] }) {
                        (result[slot], ranks[slot]) = (old[slot], remaining[index].rank)
                        taken[slot - slots.lowerBound] = true
                        remaining.remove(at: index)
                    }
                }
                for slot in slots where !taken[slot - slots.lowerBound] {
                    let next = remaining.removeFirst()
                    (result[slot], ranks[slot]) = (next.expert, next.rank)
                }
            }
            let width = placement.logicalToPhysical[layer].first?.count ?? 1
            var table = placement.logicalCount[layer].map { _ in [Int](repeating: -1, count: width) }
            for (slot, expert) in result.enumerated() { table[expert][ranks[slot]] = slot }
            maps.append(result)
            tables.append(table)
        }
        return Placement(physicalToLogical: maps, logicalToPhysical: tables, logicalCount: placement.logicalCount)
    }

    /// Mean over max of per-GPU load, each slot carrying its expert's load divided by the expert's replicas.
    public static func balancedness(weight: [Double], physicalToLogical: [Int], logicalCount: [Int], gpus: Int) -> Double {
        let perGPU = physicalToLogical.count / gpus
        let loads = (0..<gpus).map { gpu in
            physicalToLogical[(gpu * perGPU)..<((gpu + 1) * perGPU)].reduce(0.0) { $0 + weight[$1] / Double(logicalCount[$1]) }
        }
        let maximum = loads.max() ?? 0
        return maximum > 0 ? loads.reduce(0, +) / Double(loads.count) / maximum : 1
    }

    /// Each row's items into `packs` packs of equal count, heaviest first into the lightest pack
    /// that still has room; returns each item's pack and its position inside the pack.
    static func balancedPacking(_ weight: [[Double]], packs: Int) -> (pack: [[Int]], rank: [[Int]]) {
        let items = weight[0].count, perPack = items / packs
        precondition(items % packs == 0, "\(items) items do not fill \(packs) packs evenly")
        if perPack == 1 {
            let identity = weight.map { _ in Array(0..<items) }
            return (identity, weight.map { _ in [Int](repeating: 0, count: items) })
        }
        var pack = weight.map { _ in [Int](repeating: 0, count: items) }, rank = pack
        for (row, loads) in weight.enumerated() {
            var packLoad = [Double](repeating: 0, count: packs), packCount = [Int](repeating: 0, count: packs)
            for item in descendingOrder(loads) {
                var best = -1
                for candidate in 0..<packs where packCount[candidate] < perPack {
                    if best < 0 || packLoad[candidate] < packLoad[best] { best = candidate }
                }
                pack[row][item] = best
                rank[row][item] = packCount[best]
                packLoad[best] += loads[item]
                packCount[best] += 1
            }
        }
        return (pack, rank)
    }

    /// Adds `physical − logical` replicas per row, each to the expert with the highest load per replica.
    static func replicateExperts(_ weight: [[Double]], physical: Int) -> (physicalToLogical: [[Int]], rank: [[Int]], count: [[Int]]) {
        let logical = weight[0].count
        var map = weight.map { _ in Array(0..<logical) + [Int](repeating: 0, count: physical - logical) }
        var rank = weight.map { _ in [Int](repeating: 0, count: physical) }
        var count = weight.map { _ in [Int](repeating: 1, count: logical) }
        for slot in logical..<physical {
            for row in weight.indices {
                var best = 0
                for expert in 1..<logical
                where weight[row][expert] / Double(count[row][expert]) > weight[row][best] / Double(count[row][best]) {
                    best = expert
                }
                map[row][slot] = best
                rank[row][slot] = count[row][best]
                count[row][best] += 1
            }
        }
        return (map, rank, count)
    }

    private static func rebalanceHierarchical(_ weight: [[Double]], replicas: Int, groups: Int, nodes: Int,
                                              gpus: Int) throws -> ([[Int]], [[Int]], [[Int]]) {
        let layers = weight.count, experts = weight[0].count
        let groupSize = experts / groups, groupsPerNode = groups / nodes, slotsPerGPU = replicas / gpus
        let expertsPerNode = experts / nodes, slotsPerNode = replicas / nodes
        // Step 1: whole groups onto nodes, balanced by group load.
        let groupLoads = weight.map { row in (0..<groups).map { group in row[(group * groupSize)..<((group + 1) * groupSize)].reduce(0, +) } }
        let (groupPack, groupRank) = balancedPacking(groupLoads, packs: nodes)
        var logicalToMeta = weight.map { _ in [Int](repeating: 0, count: experts) }
        for layer in 0..<layers {
            for expert in 0..<experts {
                let group = expert / groupSize
                logicalToMeta[layer][expert] = (groupPack[layer][group] * groupsPerNode + groupRank[layer][group]) * groupSize
                    + expert % groupSize
            }
        }
        let metaToLogical = logicalToMeta.map(inverse)
        // Step 2: replicate inside each node; row r = layer · nodes + node.
        var nodeWeight: [[Double]] = []
        for layer in 0..<layers {
            for node in 0..<nodes {
                nodeWeight.append((0..<expertsPerNode).map { weight[layer][metaToLogical[layer][node * expertsPerNode + $0]] })
            }
        }
        let (physicalToMeta, physicalRank, metaCount) = replicateExperts(nodeWeight, physical: slotsPerNode)
        // Step 3: each node's slots onto its GPUs, balanced by per-replica load.
        let replicaLoads = nodeWeight.indices.map { row in
            physicalToMeta[row].map { nodeWeight[row][$0] / Double(metaCount[row][$0]) }
        }
        let (gpuPack, gpuRank) = balancedPacking(replicaLoads, packs: gpus / nodes)
        let packedToPhysical = gpuPack.indices.map { row in
            inverse(gpuPack[row].indices.map { gpuPack[row][$0] * slotsPerGPU + gpuRank[row][$0] })
        }
        var physicalToLogical = weight.map { _ in [Int](repeating: 0, count: replicas) }
        var ranks = physicalToLogical
        for layer in 0..<layers {
            for node in 0..<nodes {
                let row = layer * nodes + node
                for slot in 0..<slotsPerNode {
                    let source = packedToPhysical[row][slot]
                    physicalToLogical[layer][node * slotsPerNode + slot] =
                        metaToLogical[layer][physicalToMeta[row][source] + node * expertsPerNode]
                    ranks[layer][node * slotsPerNode + slot] = physicalRank[row][source]
                }
            }
        }
        let counts = (0..<layers).map { layer in
            (0..<experts).map { expert in
                let meta = logicalToMeta[layer][expert]
                return metaCount[layer * nodes + meta / expertsPerNode][meta % expertsPerNode]
            }
        }
        return (physicalToLogical, ranks, counts)
    }

    /// Indices by descending value, equal values in index order.
    private static func descendingOrder(_ values: [Double]) -> [Int] {
        values.indices.sorted { values[$0] > values[$1] || (values[$0] == values[$1] && $0 < $1) }
    }

    private static func inverse(_ permutation: [Int]) -> [Int] {
        var result = [Int](repeating: 0, count: permutation.count)
        for (index, value) in permutation.enumerated() { result[value] = index }
        return result
    }
}
