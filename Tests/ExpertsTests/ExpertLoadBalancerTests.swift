@testable import Experts
import Testing

/// The test vectors of `reference/peers-and-users.md` §1.5 (DeepSeek's eplb.py, stable descending order).
struct ExpertLoadBalancerTests {
    @Test func balancedPackingTV1() {
        let (pack, rank) = ExpertLoadBalancer.balancedPacking([[5, 8, 1, 7, 3, 6]], packs: 2)
        #expect(pack == [[0, 0, 1, 1, 0, 1]] && rank == [[1, 0, 2, 0, 2, 1]])
    }

    @Test func replicateExpertsTV2() {
        let (map, rank, count) = ExpertLoadBalancer.replicateExperts([[10, 4, 6]], physical: 5)
        #expect(map == [[0, 1, 2, 0, 2]] && rank == [[0, 0, 0, 1, 1]] && count == [[2, 1, 2]])
    }

    @Test func globalPolicyTV3() throws {
        let placement = try ExpertLoadBalancer.rebalance(weight: [[10, 4, 6, 2]], replicas: 6, groups: 1, nodes: 2, gpus: 2)
        #expect(placement.physicalToLogical == [[0, 1, 3, 0, 2, 2]])
        #expect(placement.logicalCount == [[2, 1, 2, 1]])
        #expect(placement.logicalToPhysical == [[[0, 3], [1, -1], [4, 5], [2, -1]]])
    }

    @Test func hierarchicalPolicyTV4() throws {
        let placement = try ExpertLoadBalancer.rebalance(weight: [[30, 10, 5, 5, 20, 20, 2, 8]], replicas: 12, groups: 4,
                                                         nodes: 2, gpus: 4)
        #expect(placement.physicalToLogical == [[0, 0, 2, 1, 0, 3, 4, 4, 7, 5, 5, 6]])
        #expect(placement.logicalCount == [[3, 1, 1, 1, 2, 2, 1, 1]])
        #expect(placement.logicalToPhysical == [[[0, 1, 4], [3, -1, -1], [2, -1, -1], [5, -1, -1], [6, 7, -1], [9, 10, -1],
                                                 [11, -1, -1], [8, -1, -1]]])
    }

    static let readmeWeight: [[Double]] = [[90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86],
                                           [20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27]]

    @Test func theReadmeExampleTV5() throws {
        let placement = try ExpertLoadBalancer.rebalance(weight: Self.readmeWeight, replicas: 16, groups: 4, nodes: 2, gpus: 8)
        #expect(placement.physicalToLogical == [[5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1],
                                                [7, 10, 6, 8, 6, 11, 8, 9, 2, 4, 5, 1, 5, 0, 3, 1]])
        #expect(placement.logicalCount == [[1, 2, 1, 1, 2, 2, 1, 1, 1, 1, 2, 1], [1, 2, 1, 1, 1, 2, 2, 1, 2, 1, 1, 1]])
        #expect(placement.logicalToPhysical[0] == [[12, -1], [15, 13], [11, -1], [6, -1], [7, 5], [0, 2], [1, -1], [3, -1],
                                                   [4, -1], [9, -1], [8, 10], [14, -1]])
        #expect(placement.logicalToPhysical[1] == [[13, -1], [15, 11], [8, -1], [14, -1], [9, -1], [10, 12], [2, 4], [0, -1],
                                                   [6, 3], [7, -1], [1, -1], [5, -1]])
        let balance = ExpertLoadBalancer.balancedness(weight: Self.readmeWeight[0], physicalToLogical: placement.physicalToLogical[0],
                                                      logicalCount: placement.logicalCount[0], gpus: 8)
        #expect(abs(balance - 0.828) < 0.001)
    }

    @Test func anElasticSequenceTV6() throws {
        let weight = [Self.readmeWeight[0]]
        let ep4 = try ExpertLoadBalancer.rebalance(weight: weight, replicas: 16, groups: 1, nodes: 1, gpus: 4)
        #expect(ep4.physicalToLogical == [[10, 8, 3, 7, 10, 1, 1, 4, 0, 5, 4, 2, 11, 5, 9, 6]])
        #expect(ep4.logicalCount == [[1, 2, 1, 1, 2, 2, 1, 1, 1, 1, 2, 1]])
        let ep6 = try ExpertLoadBalancer.rebalance(weight: weight, replicas: 24, groups: 1, nodes: 1, gpus: 6)
        #expect(ep6.physicalToLogical == [[9, 0, 2, 6, 5, 10, 11, 3, 5, 10, 11, 3, 5, 0, 1, 7, 4, 10, 1, 8, 4, 10, 1, 8]])
        #expect(ep6.logicalCount == [[2, 3, 1, 2, 2, 3, 1, 1, 2, 1, 4, 2]])
        let ep3 = try ExpertLoadBalancer.rebalance(weight: weight, replicas: 12, groups: 1, nodes: 1, gpus: 3)
        #expect(ep3.physicalToLogical == [[10, 11, 9, 7, 5, 0, 3, 6, 1, 4, 8, 2]])
        let balance = ExpertLoadBalancer.balancedness(weight: weight[0], physicalToLogical: ep3.physicalToLogical[0],
                                                      logicalCount: ep3.logicalCount[0], gpus: 3)
        #expect(abs(balance - 0.970) < 0.001)
    }

    @Test func badInputsAreRefused() {
        #expect(throws: ExpertLoadBalancer.InputError.self) {
            try ExpertLoadBalancer.rebalance(weight: [[1, 2, 3]], replicas: 2, groups: 1, nodes: 1, gpus: 1)
        }
        #expect(throws: ExpertLoadBalancer.InputError.self) {
            try ExpertLoadBalancer.rebalance(weight: [[1, 2, 3, 4]], replicas: 6, groups: 1, nodes: 1, gpus: 4)
        }
        #expect(throws: ExpertLoadBalancer.InputError.self) {
            try ExpertLoadBalancer.rebalance(weight: [[1, 2], [3]], replicas: 2, groups: 1, nodes: 1, gpus: 1)
        }
        #expect(throws: ExpertLoadBalancer.InputError.self) {
            try ExpertLoadBalancer.rebalance(weight: [[1, -2]], replicas: 2, groups: 1, nodes: 1, gpus: 1)
        }
    }

    @Test func expertsThatStayOnAGPUKeepTheirSlots() throws {
        let before = try ExpertLoadBalancer.rebalance(weight: [Self.readmeWeight[0]], replicas: 16, groups: 1, nodes: 1, gpus: 4)
        let shifted = [Self.readmeWeight[0].enumerated().map { $0.offset % 3 == 0 ? $0.element * 3 : $0.element }]
        let fresh = try ExpertLoadBalancer.rebalance(weight: shifted, replicas: 16, groups: 1, nodes: 1, gpus: 4)
        let kept = ExpertLoadBalancer.preservingSlots(fresh, previous: before.physicalToLogical, gpus: 4)
        var stayed = 0
        for gpu in 0..<4 {
            let slots = (gpu * 4)..<((gpu + 1) * 4)
            #expect(kept.physicalToLogical[0][slots].sorted() == fresh.physicalToLogical[0][slots].sorted(), "GPU \(gpu) holds the same experts")
            for slot in slots where fresh.physicalToLogical[0][slots].contains(before.physicalToLogical[0][slot]) {
                #expect(kept.physicalToLogical[0][slot] == before.physicalToLogical[0][slot], "slot \(slot) keeps its expert")
                stayed += 1
            }
        }
        #expect(stayed > 0, "the case must have experts that stay")
        #expect(kept.logicalCount == fresh.logicalCount)
        for (expert, slots) in kept.logicalToPhysical[0].enumerated() {
            #expect(slots.filter { $0 >= 0 }.allSatisfy { kept.physicalToLogical[0][$0] == expert })
            #expect(slots.filter { $0 >= 0 }.count == kept.logicalCount[0][expert])
        }
    }

    /// Keeping slots keeps each replica's rank: replica r stays on the GPU the balancer put it on,
    /// listed r-th, where the balancer's replica order is not the slot order.
    @Test func keptSlotsKeepTheReplicasOrder() throws {
        let before = try ExpertLoadBalancer.rebalance(weight: [Self.readmeWeight[0]], replicas: 16, groups: 1, nodes: 1, gpus: 4)
        let fresh = try ExpertLoadBalancer.rebalance(weight: [[175, 154, 197, 71, 35, 196, 131, 103, 90, 147, 124, 3]], replicas: 16,
                                                     groups: 1, nodes: 1, gpus: 4)
        #expect(fresh.logicalToPhysical[0].contains { slots in slots.filter { $0 >= 0 } != slots.filter { $0 >= 0 }.sorted() },
                "the case must have an expert whose replica order is not its slot order")
        let kept = ExpertLoadBalancer.preservingSlots(fresh, previous: before.physicalToLogical, gpus: 4)
        for (expert, slots) in kept.logicalToPhysical[0].enumerated() {
            #expect(slots.filter { $0 >= 0 }.allSatisfy { kept.physicalToLogical[0][$0] == expert })
            #expect(slots.map { $0 < 0 ? -1 : $0 / 4 } == fresh.logicalToPhysical[0][expert].map { $0 < 0 ? -1 : $0 / 4 },
                    "expert \(expert)'s replicas in the balancer's order, each on its GPU")
        }
    }

    /// The live planner routes by the balancer's replica order (`logical_to_physical_map`), as
    /// DeepSeek's eplb.py lists it, not by slot: the target of a plan is the balancer's placement.
    @Test func theLivePlanRoutesByReplicaOrder() throws {
        let weight = Self.readmeWeight[0]
        let slots = 16, ranks = 4
        let current = try ExpertPlacement(logicalExpertCount: weight.count, rankCount: ranks,
                                          physicalToLogical: experts((0..<slots).map { $0 % weight.count }))
        let totals = (0..<slots).map { slot in slot < weight.count ? Int64(weight[slot] * 100) : 0 }
        let plan = try ElasticPlacement.plan(current: [current], totals: totals, newSize: ranks)
        let target = try #require(plan.target[0])
        var expected = try ExpertLoadBalancer.rebalance(weight: [weight.map { $0 * 100 + 1 }], replicas: slots, groups: 1, nodes: 1, gpus: ranks)
        expected = ExpertLoadBalancer.preservingSlots(expected, previous: [current.physicalToLogical.map(\.index)], gpus: ranks)
        #expect(target.physicalToLogical == experts(expected.physicalToLogical[0]))
        #expect(target.logicalToPhysical == zip(expected.logicalToPhysical[0], expected.logicalCount[0]).map { $0.prefix($1).map { PhysicalSlot($0) } })
        #expect(throws: PlacementError.replicaOrderMismatch) {
            try ExpertPlacement(logicalExpertCount: weight.count, rankCount: ranks, physicalToLogical: target.physicalToLogical,
                                replicaOrder: target.logicalToPhysical.map { Array($0.dropLast()) })
        }
    }
}
