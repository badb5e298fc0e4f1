public import Compute
public import Distributed
public import Models

/// Expert parallelism over a ``StatelessGroup`` on the host: each MoE layer sends every
/// (token, pick) row to the rank that holds its expert, runs the rows it received through its
/// own slots, sends the results back, and combines them with the router weights in pick order,
/// by the same operator as a single rank, so the outputs are bitwise those of one rank.
///
/// Owned by one rank's step loop, like its group. The host buffers keep their capacity between
/// layers; per-layer allocation is only the messages' own.
public final class ExpertParallelDispatch: ExpertDispatch {
    public private(set) var group: StatelessGroup
    /// The placement of every MoE layer, by decoder layer index (`nil` for dense layers).
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

    private var input: [Float] = []
    private var picks: [Int32] = []
    private var positions: [Int32] = []
    private var rows: [Float] = []

    public init(group: StatelessGroup, placements: [ExpertPlacement?], timeout: Duration = .seconds(60)) {
        self.group = group
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
    }

    /// MoE layers in decoder order: `moeLayers[i]` is the decoder layer of the i-th block of
    /// `slotsPerLayer` counters.
    public var moeLayers: [Int] { moeLayerIndex.indices.filter { moeLayerIndex[$0] != nil } }

    /// Routes `layer`'s tokens by `placement` from the next forward on; the caller has put the
    /// weights of this rank's slots in place.
    public func switchPlacement(_ placement: ExpertPlacement, layer: Int) {
        precondition(placements[layer] != nil && placement.physicalToLogical.count == slotsPerLayer
                     && placement.rankCount == group.size, "a placement switch keeps the layer's slots and ranks")
        placements[layer] = placement
    }

    /// Runs over `group` with `placements` from the next forward on (a reconfiguration's commit:
    /// the group's size and so the slots per layer change; the step's counters start afresh).
    public func reconfigure(group: StatelessGroup, placements: [ExpertPlacement?]) {
        precondition(placements.count == self.placements.count
                     && placements.allSatisfy { $0 == nil || $0!.rankCount == group.size }, "placements for the new group")
        self.group = group
        self.placements = placements
        slotsPerLayer = placements.compactMap { $0 }.first.map { $0.rankCount * $0.slotsPerRank } ?? 0
        stepCounts = [Int64](repeating: 0, count: moeLayers.count * slotsPerLayer)
    }

    /// The MoE layers' slot counters of the step just run, then zeroed for the next one.
    public func takeStepCounts() -> [Int64] {
        defer { for index in stepCounts.indices { stepCounts[index] = 0 } }
        return stepCounts
    }

    public func runExperts(_ x: Tensor, routing: Routing, experts: ExpertWeights, layer: Int, context: ForwardContext,
                           into out: Tensor) throws {
        guard let placement = placements[layer] else {
            throw DistributedError.protocolViolation("layer \(layer) has no expert placement")
        }
        let backend = context.backend
        let tokens = x.shape[0], hidden = x.shape.rowWidth, topK = routing.topK
        let assignments = tokens * topK
        let slotsPerRank = placement.slotsPerRank
        try download(x, into: &input, count: tokens * hidden, backend)
        try download(routing.experts, into: &picks, count: assignments, backend)
        try download(context.batch.positions, into: &positions, count: tokens, backend)

        // Dispatch: per destination rank, [count][local slot × count][row × count].
        var order = [[Int]](repeating: [], count: group.size)
        var slots = [[Int32]](repeating: [], count: group.size)
        let counterBase = (moeLayerIndex[layer] ?? 0) * slotsPerLayer
        for assignment in 0..<assignments {
            let slot = placement.slot(for: Int(picks[assignment]), position: Int(positions[assignment / topK]))
            stepCounts[counterBase + slot] += 1
            let rank = slot / slotsPerRank
            order[rank].append(assignment)
            slots[rank].append(Int32(slot % slotsPerRank))
        }
        var outgoing: [[UInt8]] = []
        for rank in 0..<group.size {
            var message = [UInt8]()
            message.reserveCapacity(4 + order[rank].count * (4 + hidden * 4))
            Self.append(UInt32(order[rank].count), to: &message)
            slots[rank].withUnsafeBytes { message += $0 }
            input.withUnsafeBufferPointer { all in
                for assignment in order[rank] {
                    let row = UnsafeBufferPointer(rebasing: all[((assignment / topK) * hidden)..<((assignment / topK + 1) * hidden)])
                    UnsafeRawBufferPointer(row).withMemoryRebound(to: UInt8.self) { message += $0 }
                }
            }
            outgoing.append(message)
        }
        let started = ContinuousClock.now
        let incoming = try group.allToAll(outgoing, timeout: timeout)
        exchangedBytes += outgoing.enumerated().reduce(0) { $0 + ($1.offset == group.rank ? 0 : $1.element.count) }

        // Run what arrived through this rank's slots, one pick per row with weight 1.
        var counts: [Int] = []
        var localSlots: [Int32] = []
        rows.removeAll(keepingCapacity: true)
        for message in incoming {
            let count = try Self.count(message)
            guard message.count == 4 + count * (4 + hidden * 4) else {
                throw DistributedError.protocolViolation("a dispatch message of \(message.count) bytes for \(count) rows")
            }
            counts.append(count)
            message.withUnsafeBytes { raw in
                localSlots += UnsafeRawBufferPointer(rebasing: raw[4..<(4 + count * 4)]).bindMemory(to: Int32.self)
                rows += UnsafeRawBufferPointer(rebasing: raw[(4 + count * 4)...]).bindMemory(to: Float.self)
            }
        }
        let received = localSlots.count
        var results = [Float](repeating: 0, count: received * hidden)
        if received > 0 {
            let xs = try upload(rows, Shape(received, hidden), backend.activationDType, backend)
            let oneHot = Routing(experts: try upload(localSlots, Shape(received, 1), backend),
                                 weights: try upload([Float](repeating: 1, count: received), Shape(received, 1), .float32, backend))
            let ys = try backend.makeTensor(Shape(received, hidden), backend.activationDType, in: .scratch)
            try backend.expertMLP(xs, experts: experts, routing: oneHot, into: ys)
            try backend.synchronize()
            try results.withUnsafeMutableBufferPointer { try backend.download(ys, into: $0) }
        }

        // Combine: send each source its rows back, in the order they came.
        var replies: [[UInt8]] = []
        var offset = 0
        for count in counts {
            replies.append(results.withUnsafeBytes { Array($0[(offset * hidden * 4)..<((offset + count) * hidden * 4)]) })
            offset += count
        }
        let answers = try group.allToAll(replies, timeout: timeout)
        exchangedBytes += replies.enumerated().reduce(0) { $0 + ($1.offset == group.rank ? 0 : $1.element.count) }
        exchangeSeconds += (ContinuousClock.now - started).secondsValue

        var expertRows = [Float](repeating: 0, count: assignments * hidden)
        for rank in 0..<group.size {
            guard answers[rank].count == order[rank].count * hidden * 4 else {
                throw DistributedError.protocolViolation("rank \(rank) returned \(answers[rank].count) bytes for \(order[rank].count) rows")
            }
            answers[rank].withUnsafeBytes { raw in
                let values = raw.bindMemory(to: Float.self)
                for (index, assignment) in order[rank].enumerated() {
                    for column in 0..<hidden { expertRows[assignment * hidden + column] = values[index * hidden + column] }
                }
            }
        }
        guard assignments > 0 else { return }
        let combined = try upload(expertRows, Shape(assignments, hidden), backend.activationDType, backend)
        try backend.combineExperts(combined, weights: routing.weights, into: out)
    }

    private func download(_ tensor: Tensor, into buffer: inout [Float], count: Int, _ backend: any Backend) throws {
        if buffer.count < count { buffer = [Float](repeating: 0, count: count) }
        guard count > 0 else { return }
        try backend.synchronize()
        try buffer.withUnsafeMutableBufferPointer { try backend.download(tensor, into: UnsafeMutableBufferPointer(rebasing: $0[0..<count])) }
    }

    private func download(_ tensor: Tensor, into buffer: inout [Int32], count: Int, _ backend: any Backend) throws {
        if buffer.count < count { buffer = [Int32](repeating: 0, count: count) }
        guard count > 0 else { return }
        try backend.synchronize()
        try buffer.withUnsafeMutableBufferPointer { try backend.download(tensor, into: UnsafeMutableBufferPointer(rebasing: $0[0..<count])) }
    }

    private func upload(_ values: [Float], _ shape: Shape, _ dtype: DType, _ backend: any Backend) throws -> Tensor {
        let tensor = try backend.makeTensor(shape, dtype, in: .scratch)
        try values.withUnsafeBytes { try backend.upload(HostTensor(bytes: $0, shape: shape, dtype: .float32, owner: nil), into: tensor) }
        return tensor
    }

    private func upload(_ values: [Int32], _ shape: Shape, _ backend: any Backend) throws -> Tensor {
        let tensor = try backend.makeTensor(shape, .int32, in: .scratch)
        try values.withUnsafeBytes { try backend.upload(HostTensor(bytes: $0, shape: shape, dtype: .int32, owner: nil), into: tensor) }
        return tensor
    }

    private static func append(_ value: UInt32, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { bytes += $0 }
    }

    private static func count(_ message: [UInt8]) throws -> Int {
        guard message.count >= 4 else { throw DistributedError.protocolViolation("a dispatch message without a count") }
        return Int(UInt32(message[0]) | UInt32(message[1]) << 8 | UInt32(message[2]) << 16 | UInt32(message[3]) << 24)
    }
}

extension Duration {
    var secondsValue: Double { Double(components.seconds) + Double(components.attoseconds) * 1e-18 }
}
