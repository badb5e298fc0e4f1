/// Where the experts of one MoE layer live: every rank holds `slotsPerRank` physical slots, and
/// each physical slot holds a copy of one logical expert. Physical slot `p` is on rank
/// `p / slotsPerRank`. With redundant experts a logical expert has several copies (replicas);
/// a token picks among them by its position (replica position mod count, in replica order), so
/// the choice is deterministic.
public struct ExpertPlacement: Sendable, Equatable {
    public let logicalExpertCount: Int
    public let rankCount: Int
    public let slotsPerRank: Int
    /// Logical expert of each physical slot, `rankCount · slotsPerRank` entries.
    public let physicalToLogical: [LogicalExpert]
    /// Physical slots of each logical expert (by its index) in replica order: as DeepSeek's
    /// balancer ranked the replicas (`logical_to_physical_map`), or ascending when no order was given.
    public let logicalToPhysical: [[PhysicalSlot]]

    /// - Parameter replicaOrder: each expert's slots in replica order (DeepSeek's balancer's); a
    ///   permutation of the slots `physicalToLogical` gives it. `nil`: ascending.
    public init(logicalExpertCount: Int, rankCount: Int, physicalToLogical: [LogicalExpert], replicaOrder: [[PhysicalSlot]]? = nil) throws {
        guard rankCount >= 1, physicalToLogical.count % rankCount == 0 else {
            throw PlacementError.uneven(slots: physicalToLogical.count, ranks: rankCount,
                                        validRankCounts: Self.divisors(physicalToLogical.count))
        }
        var replicas = [[PhysicalSlot]](repeating: [], count: logicalExpertCount)
        for (physical, logical) in physicalToLogical.enumerated() {
            guard (0..<logicalExpertCount).contains(logical.index) else {
                throw PlacementError.unknownExpert(logical.index, count: logicalExpertCount)
            }
            replicas[logical.index].append(PhysicalSlot(physical))
        }
        if let missing = replicas.firstIndex(where: \.isEmpty) { throw PlacementError.expertWithoutSlot(missing) }
        if let replicaOrder {
            guard replicaOrder.count == logicalExpertCount,
                  zip(replicaOrder, replicas).allSatisfy({ $0.sorted() == $1 }) else { throw PlacementError.replicaOrderMismatch }
            replicas = replicaOrder
        }
        self.logicalExpertCount = logicalExpertCount
        self.rankCount = rankCount
        slotsPerRank = physicalToLogical.count / rankCount
        self.physicalToLogical = physicalToLogical
        logicalToPhysical = replicas
    }

    /// The first layout. Without redundant experts rank r holds logical experts r·E/N ..< (r+1)·E/N
    /// in order; with R of them, each rank holds its share of the originals in order, then copies
    /// of experts 0, 1, 2, … in turn.
    public static func initial(logicalExperts: Int, ranks: Int, redundantExperts: Int = 0) throws -> ExpertPlacement {
        let slots = logicalExperts + redundantExperts
        guard ranks >= 1, logicalExperts >= 1, redundantExperts >= 0, slots % ranks == 0 else {
            throw PlacementError.uneven(slots: slots, ranks: ranks, validRankCounts: divisors(slots))
        }
        let perRank = slots / ranks
        var physical: [LogicalExpert] = []
        var originals = 0, copies = 0
        for rank in 0..<ranks {
            let share = (rank + 1) * logicalExperts / ranks - rank * logicalExperts / ranks
            for index in 0..<perRank {
                if index < share {
                    physical.append(LogicalExpert(originals))
                    originals += 1
                } else {
                    physical.append(LogicalExpert(copies % logicalExperts))
                    copies += 1
                }
            }
        }
        return try ExpertPlacement(logicalExpertCount: logicalExperts, rankCount: ranks, physicalToLogical: physical)
    }

    public func rank(ofSlot physical: PhysicalSlot) -> Int { physical.index / slotsPerRank }

    /// The logical experts held by `rank`, slot by slot.
    public func logicalExperts(onRank rank: Int) -> ArraySlice<LogicalExpert> {
        physicalToLogical[(rank * slotsPerRank)..<((rank + 1) * slotsPerRank)]
    }

    /// The slot a token at `position` uses for `logical`: its replicas taken in turn by position.
    @inline(__always)
    public func slot(for logical: LogicalExpert, position: Int) -> PhysicalSlot {
        let replicas = logicalToPhysical[logical.index]
        return replicas[position % replicas.count]
    }

    /// The placement as a ``DeviceExpertExchange`` reads it: for each logical expert its replica
    /// count, then its slots, padded to the most replicas any expert can have (every slot but one
    /// per other expert).
    public var replicaTable: [Int32] {
        let width = physicalToLogical.count - logicalExpertCount + 1
        var table = [Int32](repeating: 0, count: logicalExpertCount * (width + 1))
        for (logical, slots) in logicalToPhysical.enumerated() {
            table[logical * (width + 1)] = Int32(slots.count)
            for (index, slot) in slots.enumerated() { table[logical * (width + 1) + 1 + index] = Int32(slot.index) }
        }
        return table
    }

    static func divisors(_ value: Int) -> [Int] { value < 1 ? [] : (1...value).filter { value % $0 == 0 } }
}

public enum PlacementError: Error, CustomStringConvertible, Equatable {
    case uneven(slots: Int, ranks: Int, validRankCounts: [Int])
    case unknownExpert(Int, count: Int)
    case expertWithoutSlot(Int)
    case tooFewSlots(ranks: Int, slotsPerRank: Int, experts: Int)
    case replicaOrderMismatch

    public var description: String {
        switch self {
        case .uneven(let slots, let ranks, let valid):
            "\(slots) expert slots per layer do not divide evenly over \(ranks) ranks; "
                + "rank counts that work: \(valid.map(String.init).joined(separator: ", "))"
        case .unknownExpert(let expert, let count): "expert \(expert) is outside the layer's \(count) experts"
        case .expertWithoutSlot(let expert): "logical expert \(expert) has no slot on any rank"
        case .tooFewSlots(_, 0, let experts): "no expert slots are left to hold \(experts) experts"
        case .tooFewSlots(let ranks, let perRank, let experts):
            "\(ranks) ranks of \(perRank) expert slots cannot hold \(experts) experts; "
                + "at least \((experts + perRank - 1) / perRank) ranks are needed"
        case .replicaOrderMismatch: "a replica order that does not list each expert's slots exactly"
        }
    }
}
