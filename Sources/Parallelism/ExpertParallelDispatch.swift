public import Compute
public import Experts
public import Models
public import Transport

/// Expert parallelism: each MoE layer sends every (token, pick) row to the rank that holds its
/// expert's slot, runs the rows it received through its own slots, sends the results back, and
/// combines them with the router weights in pick order, by the same operator as a single rank,
/// so the outputs are those of one rank (bitwise, where the backend's expert kernel computes a
/// row the same whatever rows come with it).
///
/// With a ``DeviceExpertExchange`` (CUDA ranks of one host) the whole layer is device work: the
/// placements go to the device as replica tables, the slot counters live there, and steps may be
/// recorded as graphs. Otherwise the host decides where rows go (it reads the layer's picks, a
/// few bytes per token) and tells each rank which of its slots the rows it will receive are for,
/// over the group; the rows themselves stay on the device and move by ``DeviceCollectives``
/// (NCCL between GPUs, host staging elsewhere).
///
/// Owned by one rank's step loop, like its group. The per-assignment host buffers keep their
/// capacity between layers; per layer, only the per-rank counts and slot lists are allocated.
public final class ExpertParallelDispatch: ExpertDispatch {
    public private(set) var group: StatelessGroup
    /// What moves the rows; `nil` until the first layer when host-staged over `group`.
    public private(set) var collectives: (any DeviceCollectives)?
    /// What runs whole layers on the device, when the ranks have one.
    public private(set) var exchange: (any DeviceExpertExchange)?
    /// The MoE placement of every decoder layer (`nil` for dense layers).
    public private(set) var placements: [ExpertPlacement?]
    public let timeout: Duration
    /// Bytes this rank sent in dispatch and combine, and the seconds spent in them (metrics).
    public private(set) var exchangedBytes = 0
    public private(set) var exchangeSeconds = 0.0

    /// Tokens this rank sent to each slot in the current step, per MoE layer (`moeLayers` order).
    private var stepCounts: [Int64]
    /// MoE layers in order, and each decoder layer's position among them.
    private let moeLayerIndex: [Int?]
    public private(set) var slotsPerLayer: Int
    /// See ``ExpertDispatch/isLocal``; kept current by every change of group or placement. While
    /// local, layers do not come through ``runExperts(_:routing:experts:layer:context:into:)``, so
    /// the step counters stay zero (one rank has no load to balance).
    public private(set) var isLocal = false

    private var picks: [Int32] = []
    private var positions: [Int32] = []
    /// Per assignment: destination rank and slot there; sorted by rank: token, slot, and where
    /// each assignment went in that order.
    private var destinations: [Int32] = []
    private var localSlots: [Int32] = []
    private var sortedTokens: [Int32] = []
    private var sortedSlots: [Int32] = []
    private var sortedIndex: [Int32] = []
    /// Router weights of the rows this rank runs: one pick each, weight 1.
    private var ones: [Float] = []

    /// - Parameter transport: what carries the rows over the same ranks as `group`.
    public init(group: StatelessGroup, placements: [ExpertPlacement?], timeout: Duration = .seconds(60),
                transport: ExpertTransport = .hostStaged) throws {
        try Self.check(transport, group)
        self.group = group
        collectives = transport.collectives
        exchange = transport.exchange
        self.placements = placements
        self.timeout = timeout
        var index = 0
        moeLayerIndex = placements.map { placement in
            guard placement != nil else { return nil }
            defer { index += 1 }
            return index
        }
        slotsPerLayer = placements.compactMap { $0 }.first.map { $0.rankCount * $0.slotsPerRank } ?? 0
        stepCounts = [Int64](repeating: 0, count: index * slotsPerLayer)
        isLocal = Self.isLocal(group: group, placements: placements)
        try uploadPlacements()
    }

    private static func check(_ transport: ExpertTransport, _ group: StatelessGroup) throws {
        let ranks = transport.collectives.map { ($0.rank, $0.size) } ?? transport.exchange.map { ($0.rank, $0.size) }
        guard ranks.map({ $0 == (group.rank, group.size) }) ?? true else {
            throw TransportError.protocolViolation("a \(transport.name) transport of rank \(ranks!.0) of \(ranks!.1) "
                                                     + "for rank \(group.rank) of \(group.size)")
        }
    }

    /// Every MoE layer's placement to the device exchange, if there is one.
    private func uploadPlacements() throws {
        guard let exchange else { return }
        for (layer, placement) in placements.enumerated() {
            guard let placement, let index = moeLayerIndex[layer] else { continue }
            try exchange.setPlacement(moeLayer: index, table: placement.replicaTable)
        }
    }

    /// Whether steps through this dispatch may be recorded as graphs: no MoE layer does host work
    /// (the rank runs its experts locally, or the device exchange runs the layers).
    public var allowsStepGraphs: Bool { isLocal || exchange != nil }

    /// Whether the slot counters are on the device (then read only when ``takeStepCounts()`` is
    /// called, which waits for the device).
    public var countsOnDevice: Bool { exchange != nil }

    private static func isLocal(group: StatelessGroup, placements: [ExpertPlacement?]) -> Bool {
        group.size == 1 && placements.allSatisfy { placement in
            placement.map { $0.physicalToLogical == (0..<$0.physicalToLogical.count).map { LogicalExpert($0) } } ?? true
        }
    }

    /// MoE layers in decoder order: `moeLayers[i]` is the decoder layer of the i-th block of
    /// `slotsPerLayer` counters.
    public var moeLayers: [Int] { moeLayerIndex.indices.filter { moeLayerIndex[$0] != nil } }

    /// Routes `layer`'s tokens by `placement` from the next forward on; the caller has put the
    /// weights of this rank's slots in place.
    public func switchPlacement(_ placement: ExpertPlacement, layer: Int) throws {
        precondition(placements[layer] != nil && placement.physicalToLogical.count == slotsPerLayer
                     && placement.rankCount == group.size, "a placement switch keeps the layer's slots and ranks")
        placements[layer] = placement
        isLocal = Self.isLocal(group: group, placements: placements)
        if let exchange, let index = moeLayerIndex[layer] { try exchange.setPlacement(moeLayer: index, table: placement.replicaTable) }
    }

    /// Runs over `group` with `placements` from the next forward on (a reconfiguration's commit:
    /// the group's size and so the slots per layer change; the step's counters start afresh).
    public func reconfigure(group: StatelessGroup, placements: [ExpertPlacement?], transport: ExpertTransport = .hostStaged) throws {
        precondition(placements.count == self.placements.count
                     && placements.allSatisfy { $0 == nil || $0!.rankCount == group.size }, "placements for the new group")
        try Self.check(transport, group)
        self.group = group
        collectives = transport.collectives
        exchange = transport.exchange
        self.placements = placements
        slotsPerLayer = placements.compactMap { $0 }.first.map { $0.rankCount * $0.slotsPerRank } ?? 0
        stepCounts = [Int64](repeating: 0, count: moeLayers.count * slotsPerLayer)
        isLocal = Self.isLocal(group: group, placements: placements)
        try uploadPlacements()
    }

    /// The MoE layers' slot counters since the last call (on the host: of the step just run),
    /// then zeroed.
    public func takeStepCounts() throws -> [Int64] {
        if let exchange { return try exchange.takeCounts() }
        defer { for index in stepCounts.indices { stepCounts[index] = 0 } }
        return stepCounts
    }

    /// Throws when the device exchange gave up waiting for a peer since the last call.
    public func checkHealth() throws {
        try exchange?.checkHealth()
    }

    public func runExperts(_ x: Tensor, routing: Routing, experts: ExpertWeights, layer: Int, context: ForwardContext,
                           into out: Tensor) throws {
        guard let placement = placements[layer], let moeLayer = moeLayerIndex[layer] else {
            throw TransportError.protocolViolation("layer \(layer) has no expert placement")
        }
        if let exchange {
            try exchange.runExperts(x, routing: routing, batch: context.batch, experts: experts, moeLayer: moeLayer, into: out)
            return
        }
        let backend = context.backend
        let collectives = self.collectives ?? HostStagedCollectives(group: group, backend: backend, timeout: timeout)
        self.collectives = collectives
        let tokens = x.shape[0], hidden = x.shape.rowWidth, topK = routing.topK
        let assignments = tokens * topK, size = group.size, slotsPerRank = placement.slotsPerRank
        try download(routing.experts, into: &picks, count: assignments, backend)
        try download(context.batch.positions, into: &positions, count: tokens, backend)

        // Where each assignment goes, then the assignments sorted by rank (stable, so each rank's
        // rows keep pick order).
        resize(&destinations, assignments)
        resize(&localSlots, assignments)
        var sendCounts = [Int](repeating: 0, count: size)
        let counterBase = moeLayer * slotsPerLayer
        for assignment in 0..<assignments {
            let slot = placement.slot(for: LogicalExpert(Int(picks[assignment])), position: Int(positions[assignment / topK])).index
            stepCounts[counterBase + slot] += 1
            destinations[assignment] = Int32(slot / slotsPerRank)
            localSlots[assignment] = Int32(slot % slotsPerRank)
            sendCounts[slot / slotsPerRank] += 1
        }
        var cursors = [Int](repeating: 0, count: size)
        for rank in 1..<max(size, 1) { cursors[rank] = cursors[rank - 1] + sendCounts[rank - 1] }
        resize(&sortedTokens, assignments)
        resize(&sortedSlots, assignments)
        resize(&sortedIndex, assignments)
        for assignment in 0..<assignments {
            let rank = Int(destinations[assignment])
            let at = cursors[rank]
            cursors[rank] += 1
            sortedTokens[at] = Int32(assignment / topK)
            sortedSlots[at] = localSlots[assignment]
            sortedIndex[assignment] = Int32(at)
        }

        // Each rank learns which of its slots the rows it will receive are for (and so how many).
        let started = ContinuousClock.now
        var outgoing: [[UInt8]] = []
        var offset = 0
        for count in sendCounts {
            outgoing.append(sortedSlots.withUnsafeBytes { Array($0[(offset * 4)..<((offset + count) * 4)]) })
            offset += count
        }
        let incoming = try group.allToAll(outgoing, timeout: timeout)
        var receiveCounts: [Int] = []
        var receivedSlots: [Int32] = []
        for (peer, message) in incoming.enumerated() {
            guard message.count % 4 == 0 else {
                throw TransportError.protocolViolation("rank \(peer) sent a slot list of \(message.count) bytes")
            }
            receiveCounts.append(message.count / 4)
            message.withUnsafeBytes { receivedSlots += $0.bindMemory(to: Int32.self) }
        }
        let received = receivedSlots.count
        guard receivedSlots.allSatisfy({ (0..<Int32(slotsPerRank)).contains($0) }) else {
            throw TransportError.protocolViolation("a slot outside this rank's \(slotsPerRank) in layer \(layer)")
        }

        // Rows out, through this rank's slots (one pick per row, weight 1), and back.
        let dtype = x.dtype, rowBytes = hidden * dtype.byteCount
        let outbound = try backend.makeTensor(Shape(max(assignments, 1), hidden), dtype, in: .scratch)
        if assignments > 0 {
            try backend.gatherRows(x, rows: try upload(sortedTokens, count: assignments, backend), into: outbound.rows(0..<assignments))
        }
        let inbound = try backend.makeTensor(Shape(max(received, 1), hidden), dtype, in: .scratch)
        try collectives.exchangeRows(outbound, sendCounts: sendCounts, into: inbound, receiveCounts: receiveCounts)
        let results = try backend.makeTensor(Shape(max(received, 1), hidden), dtype, in: .scratch)
        if received > 0 {
            let oneHot = Routing(experts: try upload(receivedSlots, count: received, backend),
                                 weights: try uploadOnes(count: received, backend))
            try backend.expertMLP(inbound.rows(0..<received), experts: experts, routing: oneHot, into: results.rows(0..<received))
        }
        let returned = try backend.makeTensor(Shape(max(assignments, 1), hidden), dtype, in: .scratch)
        try collectives.exchangeRows(results, sendCounts: receiveCounts, into: returned, receiveCounts: sendCounts)
        exchangeSeconds += (ContinuousClock.now - started).seconds
        let stayed = sendCounts[group.rank] + receiveCounts[group.rank]
        exchangedBytes += (assignments + received - stayed) * rowBytes + (assignments - sendCounts[group.rank]) * 4

        // Back in pick order, then the same weighted sum as one rank.
        guard assignments > 0 else { return }
        let expertRows = try backend.makeTensor(Shape(assignments, hidden), dtype, in: .scratch)
        try backend.gatherRows(returned, rows: try upload(sortedIndex, count: assignments, backend), into: expertRows)
        try backend.combineExperts(expertRows, weights: routing.weights, into: out)
    }

    private func resize(_ buffer: inout [Int32], _ count: Int) {
        if buffer.count < count { buffer = [Int32](repeating: 0, count: count) }
    }

    private func download(_ tensor: Tensor, into buffer: inout [Int32], count: Int, _ backend: any Backend) throws {
        resize(&buffer, count)
        guard count > 0 else { return }
        try backend.synchronize()
        try buffer.withUnsafeMutableBufferPointer { try backend.download(tensor, into: UnsafeMutableBufferPointer(rebasing: $0[0..<count])) }
    }

    private func upload(_ values: [Int32], count: Int, _ backend: any Backend) throws -> Tensor {
        try backend.makeScratch(values[0..<count], Shape(count, 1))
    }

    private func uploadOnes(count: Int, _ backend: any Backend) throws -> Tensor {
        if ones.count < count { ones = [Float](repeating: 1, count: count) }
        return try backend.makeScratch(ones[0..<count], Shape(count, 1))
    }
}
