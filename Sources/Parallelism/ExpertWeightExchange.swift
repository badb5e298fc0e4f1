public import Compute
public import Experts
public import Transport

/// Carries out one layer's ``ExpertTransfer``s over a group: each rank sends the slots it is
/// the source of, in plan order, and writes the slots it receives, in rounds of at most
/// `chunkBytes` per pair of ranks, so that no message is larger than a chunk however large the
/// layer (a layer of Qwen3-30B-A3B's experts is 1.2 GB).
///
/// The slots a rank sends are read, all of them, before any slot is written (a slot may be both
/// read and written in one rebalance); moves within a rank are written from what was read, with
/// no message; the receiver keeps at most a chunk and one slot per source.
///
/// With ``PeerMemory`` (ranks of one host that map each other's memory) the bytes never leave the
/// devices: ranks share their expert tensors' handles, and each rank copies the slots it receives
/// from its peers' memory itself, on its own stream, with no work for the senders.
public enum ExpertWeightExchange {
    public static let defaultChunkBytes = 64 << 20

    /// Every rank of `group` calls this with the same transfers and chunk size (and all with a
    /// `peer` or none). Returns the slots this rank received.
    public static func run(_ transfers: [ExpertTransfer], weights: ExpertWeights, group: StatelessGroup,
                           backend: any Backend, timeout: Duration, chunkBytes: Int = defaultChunkBytes,
                           peer: (any PeerMemory)? = nil) throws -> Int {
        try run(transfers, weights: weights, group: group, copies: backend, timeout: timeout, chunkBytes: chunkBytes, peer: peer) {
            try backend.makeTensor($0, $1, in: .weights)
        }
    }

    /// The same from a thread that is not the backend's, through `copies` (a ``TransferStream``),
    /// for transfers that read no slot they write (a growing group's: old slots into newcomers'),
    /// which need no staging.
    public static func run(_ transfers: [ExpertTransfer], weights: ExpertWeights, group: StatelessGroup,
                           copies: any TensorTransfers, timeout: Duration, chunkBytes: Int = defaultChunkBytes,
                           peer: (any PeerMemory)? = nil) throws -> Int {
        try run(transfers, weights: weights, group: group, copies: copies, timeout: timeout, chunkBytes: chunkBytes, peer: peer) { _, _ in
            throw TransportError.protocolViolation("transfers that read slots they write need staging, which only the step loop allocates")
        }
    }

    private static func run(_ transfers: [ExpertTransfer], weights: ExpertWeights, group: StatelessGroup,
                            copies: any TensorTransfers, timeout: Duration, chunkBytes: Int, peer: (any PeerMemory)?,
                            makeStaging: (Shape, DType) throws -> Tensor) throws -> Int {
        if let peer { return try run(transfers, weights: weights, group: group, timeout: timeout, peer: peer, makeStaging: makeStaging) }
        precondition(chunkBytes >= 1, "a chunk holds at least one byte")
        let me = group.rank, size = group.size
        // A slot's bytes: a row of each of the experts' tensors (projections, then any biases), one after another.
        let tensors = weights.slotTensors
        let expertBytes = tensors.reduce(0) { $0 + $1.byteCount / weights.expertCount }

        try copies.synchronize()
        var outgoing = [[UInt8]](repeating: [], count: size)
        for transfer in transfers where transfer.source == me {
            var bytes = [UInt8](repeating: 0, count: expertBytes)
            try bytes.withUnsafeMutableBytes { raw in
                var offset = 0
                for tensor in tensors {
                    let part = slot(tensor, transfer.sourceSlot)
                    try copies.downloadBytes(part, into: UnsafeMutableRawBufferPointer(rebasing: raw[offset..<(offset + part.byteCount)]))
                    offset += part.byteCount
                }
            }
            outgoing[transfer.destination] += bytes
        }

        // Moves within this rank need no message: written from what was read, before any round writes.
        var received = 0
        for (index, transfer) in transfers.filter({ $0.source == me && $0.destination == me }).enumerated() {
            try write(Array(outgoing[me][(index * expertBytes)..<((index + 1) * expertBytes)]), into: transfer.destinationSlot,
                      of: tensors, copies: copies)
            received += 1
        }
        outgoing[me] = []

        // Every rank derives the same number of rounds from the plan: the largest pair's chunks.
        var pairSlots = [Int](repeating: 0, count: size * size)
        for transfer in transfers where transfer.source != transfer.destination {
            pairSlots[transfer.source * size + transfer.destination] += 1
        }
        let rounds = pairSlots.map { ($0 * expertBytes + chunkBytes - 1) / chunkBytes }.max() ?? 0

        // Per source: the transfers that land here in plan order, the next one due, and its bytes so far.
        var arriving = [[ExpertTransfer]](repeating: [], count: size)
        for transfer in transfers where transfer.destination == me && transfer.source != me { arriving[transfer.source].append(transfer) }
        var nextArrival = [Int](repeating: 0, count: size)
        var partial = [[UInt8]](repeating: [], count: size)
        for round in 0..<rounds {
            let messages = outgoing.map { bytes -> [UInt8] in
                let start = min(bytes.count, round * chunkBytes)
                return Array(bytes[start..<min(bytes.count, start + chunkBytes)])
            }
            let incoming = try group.allToAll(messages, timeout: timeout)
            for source in 0..<size where !incoming[source].isEmpty {
                var chunk = incoming[source][...]
                while !chunk.isEmpty {
                    guard nextArrival[source] < arriving[source].count else {
                        throw TransportError.protocolViolation("rank \(source) sent more expert bytes than the plan holds")
                    }
                    let take = min(chunk.count, expertBytes - partial[source].count)
                    partial[source] += chunk.prefix(take)
                    chunk = chunk.dropFirst(take)
                    guard partial[source].count == expertBytes else { continue }
                    try write(partial[source], into: arriving[source][nextArrival[source]].destinationSlot, of: tensors,
                              copies: copies)
                    partial[source].removeAll(keepingCapacity: true)
                    nextArrival[source] += 1
                    received += 1
                }
            }
        }
        for source in 0..<size where nextArrival[source] != arriving[source].count || !partial[source].isEmpty {
            throw TransportError.protocolViolation(
                "rank \(source) sent \(nextArrival[source]) of the \(arriving[source].count) experts the plan has it send here")
        }
        try copies.synchronize()
        return received
    }

    /// The device-to-device path: every rank shares its expert tensors (one all-gather of
    /// handles) and copies each slot it receives from its source's memory; a slot that is also
    /// read in the same run is first copied into staging, which goes into place only after every
    /// rank has finished reading (a barrier).
    private static func run(_ transfers: [ExpertTransfer], weights: ExpertWeights, group: StatelessGroup,
                            timeout: Duration, peer: any PeerMemory, makeStaging: (Shape, DType) throws -> Tensor) throws -> Int {
        let me = group.rank
        let tensors = weights.slotTensors
        let shared = try group.allGather(SharedTensor.encode(try tensors.map { try peer.share($0) }),
                                         timeout: timeout).map { try SharedTensor.decode($0) }
        guard shared.allSatisfy({ $0.count == tensors.count }) else {
            throw TransportError.protocolViolation("a rank shared \(shared.map(\.count)) expert tensors where \(tensors.count) were due")
        }
        let incoming = transfers.filter { $0.destination == me }
        let slotBytes = tensors.map { $0.byteCount / weights.expertCount }
        // A slot that some rank reads in this run is written only after every rank has read: what
        // arrives for it waits in staging until the barrier. Every other slot is written at once.
        let readSlots = Set(transfers.filter { $0.source == me }.map(\.sourceSlot))
        let staged = incoming.filter { readSlots.contains($0.destinationSlot) }
        let staging = staged.isEmpty ? nil : try tensors.map { try makeStaging(Shape(staged.count, $0.shape.rowWidth), $0.dtype) }
        // Copies already queued must land before their memory (staging, or a mapping) goes away.
        defer { try? peer.finish() }
        var stagedIndex = 0
        for transfer in incoming {
            let targets: [Tensor]
            if let staging, readSlots.contains(transfer.destinationSlot) {
                targets = staging.map { $0.rows(stagedIndex..<(stagedIndex + 1)) }
                stagedIndex += 1
            } else {
                targets = tensors.map { slot($0, transfer.destinationSlot) }
            }
            if transfer.source == me {
                for (tensor, target) in zip(tensors, targets) { try peer.copy(slot(tensor, transfer.sourceSlot), into: target) }
            } else {
                guard shared.indices.contains(transfer.source) else {
                    throw TransportError.protocolViolation("a transfer from rank \(transfer.source) of \(group.size)")
                }
                for (index, target) in targets.enumerated() {
                    try peer.copy(from: shared[transfer.source][index], byteOffset: transfer.sourceSlot * slotBytes[index], into: target)
                }
            }
        }
        try peer.finish()
        try group.barrier(timeout: timeout)
        if let staging {
            for (index, transfer) in staged.enumerated() {
                for (tensor, stage) in zip(tensors, staging) {
                    try peer.copy(stage.rows(index..<(index + 1)), into: slot(tensor, transfer.destinationSlot))
                }
            }
            try peer.finish()
        }
        return incoming.count
    }

    /// Writes a slot's bytes (a row of each tensor, in turn) into slot `index` of `tensors`.
    private static func write(_ bytes: [UInt8], into index: Int, of tensors: [Tensor], copies: any TensorTransfers) throws {
        try bytes.withUnsafeBytes { raw in
            var offset = 0
            for tensor in tensors {
                let part = slot(tensor, index)
                try copies.upload(HostTensor(bytes: UnsafeRawBufferPointer(rebasing: raw[offset..<(offset + part.byteCount)]),
                                             shape: part.shape, dtype: part.dtype, owner: nil), into: part)
                offset += part.byteCount
            }
        }
    }

    private static func slot(_ tensor: Tensor, _ index: Int) -> Tensor { tensor.rows(index..<(index + 1)) }
}

/// A dense weight from one rank to another in messages of at most `chunkBytes` (whole rows, or
/// one row where a row is larger): the two sides call the matching function with the same tensor
/// shape and chunk size.
public enum WeightChunks {
    /// The row ranges both sides move, in order.
    static func rowRanges(_ tensor: Tensor, chunkBytes: Int) -> [Range<Int>] {
        let rows = tensor.shape.rank == 0 ? 1 : tensor.shape[0]
        let rowBytes = max(1, tensor.byteCount / max(rows, 1))
        let perChunk = max(1, chunkBytes / rowBytes)
        return stride(from: 0, to: rows, by: perChunk).map { $0..<min(rows, $0 + perChunk) }
    }

    public static func send(_ tensor: Tensor, to peer: Int, group: StatelessGroup, copies: any TensorTransfers, timeout: Duration,
                            chunkBytes: Int = ExpertWeightExchange.defaultChunkBytes) throws {
        var bytes: [UInt8] = []
        for range in rowRanges(tensor, chunkBytes: chunkBytes) {
            let piece = tensor.shape.rank == 0 ? tensor : tensor.rows(range)
            if bytes.count != piece.byteCount { bytes = [UInt8](repeating: 0, count: piece.byteCount) }
            try bytes.withUnsafeMutableBytes { try copies.downloadBytes(piece, into: $0) }
            try group.send(bytes, to: peer, timeout: timeout)
        }
    }

    /// Device to device: the sender shares `tensors` in one message, the receiver copies them into
    /// its own (``receive(into:from:group:peer:timeout:)``) and says when it is done, so that the
    /// sender's memory stays as it was until then.
    public static func send(_ tensors: [Tensor], to receiver: Int, group: StatelessGroup, peer: any PeerMemory,
                            timeout: Duration) throws {
        try group.send(SharedTensor.encode(try tensors.map { try peer.share($0) }), to: receiver, timeout: timeout)
        guard try group.receive(from: receiver, timeout: timeout) == [1] else {
            throw TransportError.protocolViolation("rank \(receiver) did not copy the weights it was sent")
        }
    }

    public static func receive(into tensors: [Tensor], from sender: Int, group: StatelessGroup, peer: any PeerMemory,
                               timeout: Duration) throws {
        let shared = try SharedTensor.decode(try group.receive(from: sender, timeout: timeout))
        guard shared.count == tensors.count, zip(shared, tensors).allSatisfy({ $0.byteCount == $1.byteCount }) else {
            // The sender waits for an answer: a refusal ends its wait at once.
            try? group.send([0], to: sender, timeout: timeout)
            throw TransportError.protocolViolation("rank \(sender) shared \(shared.count) weights where \(tensors.count) were due, or of other sizes")
        }
        do {
            for (source, tensor) in zip(shared, tensors) { try peer.copy(from: source, byteOffset: 0, into: tensor) }
            try peer.finish()
        } catch {
            try? peer.finish()
            try? group.send([0], to: sender, timeout: timeout)
            throw error
        }
        try group.send([1], to: sender, timeout: timeout)
    }

    public static func receive(into tensor: Tensor, from peer: Int, group: StatelessGroup, copies: any TensorTransfers, timeout: Duration,
                               chunkBytes: Int = ExpertWeightExchange.defaultChunkBytes) throws {
        for range in rowRanges(tensor, chunkBytes: chunkBytes) {
            let piece = tensor.shape.rank == 0 ? tensor : tensor.rows(range)
            let bytes = try group.receive(from: peer, timeout: timeout)
            guard bytes.count == piece.byteCount else {
                throw TransportError.protocolViolation("rank \(peer) sent \(bytes.count) bytes of a weight where \(piece.byteCount) were due")
            }
            try bytes.withUnsafeBytes {
                try copies.upload(HostTensor(bytes: $0, shape: piece.shape, dtype: piece.dtype, owner: nil), into: piece)
            }
        }
    }
}
