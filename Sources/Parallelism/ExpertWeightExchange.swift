public import Compute
public import Distributed

/// Carries out one layer's ``ExpertTransfer``s over a group: one all-to-all in which each rank
/// sends the slots it is the source of, in plan order, and writes the slots it receives.
public enum ExpertWeightExchange {
    /// Every rank of `group` calls this with the same transfers. Returns the slots this rank received.
    public static func run(_ transfers: [ExpertTransfer], weights: ExpertWeights, group: StatelessGroup,
                           backend: any Backend, timeout: Duration) throws -> Int {
        let me = group.rank
        let gateUpBytes = weights.gateUp.byteCount / weights.expertCount
        let downBytes = weights.down.byteCount / weights.expertCount
        let expertBytes = gateUpBytes + downBytes

        // Read every slot this rank sends before any is overwritten (a rank may send to itself).
        try backend.synchronize()
        var outgoing = [[UInt8]](repeating: [], count: group.size)
        for transfer in transfers where transfer.source == me {
            var bytes = [UInt8](repeating: 0, count: expertBytes)
            try bytes.withUnsafeMutableBytes { raw in
                try backend.downloadBytes(slot(weights.gateUp, transfer.sourceSlot),
                                          into: UnsafeMutableRawBufferPointer(rebasing: raw[0..<gateUpBytes]))
                try backend.downloadBytes(slot(weights.down, transfer.sourceSlot),
                                          into: UnsafeMutableRawBufferPointer(rebasing: raw[gateUpBytes...]))
            }
            outgoing[transfer.destination] += bytes
        }
        let incoming = try group.allToAll(outgoing, timeout: timeout)

        var offsets = [Int](repeating: 0, count: group.size)
        var received = 0
        for transfer in transfers where transfer.destination == me {
            let message = incoming[transfer.source], offset = offsets[transfer.source]
            guard message.count >= offset + expertBytes else {
                throw DistributedError.protocolViolation("rank \(transfer.source) sent \(message.count) bytes of experts; the plan needs more")
            }
            try message.withUnsafeBytes { raw in
                let gateUp = slot(weights.gateUp, transfer.destinationSlot), down = slot(weights.down, transfer.destinationSlot)
                try backend.upload(HostTensor(bytes: UnsafeRawBufferPointer(rebasing: raw[offset..<(offset + gateUpBytes)]),
                                              shape: gateUp.shape, dtype: gateUp.dtype, owner: nil), into: gateUp)
                try backend.upload(HostTensor(bytes: UnsafeRawBufferPointer(rebasing: raw[(offset + gateUpBytes)..<(offset + expertBytes)]),
                                              shape: down.shape, dtype: down.dtype, owner: nil), into: down)
            }
            offsets[transfer.source] += expertBytes
            received += 1
        }
        for source in 0..<group.size where offsets[source] != incoming[source].count {
            throw DistributedError.protocolViolation(
                "rank \(source) sent \(incoming[source].count) bytes of experts, the plan \(offsets[source])")
        }
        try backend.synchronize()
        return received
    }

    private static func slot(_ tensor: Tensor, _ index: Int) -> Tensor { tensor.rows(index..<(index + 1)) }
}
