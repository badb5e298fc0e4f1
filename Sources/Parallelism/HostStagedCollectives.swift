public import Compute
public import Distributed

/// Rows through host memory and the group's TCP connections: the transport of CPU ranks, and of
/// GPU ranks where NCCL cannot serve (ranks sharing a GPU, which NCCL refuses; elastic groups,
/// whose membership changes between steps).
///
/// Owned by one rank's step loop, like its group and backend.
public final class HostStagedCollectives: DeviceCollectives {
    public let group: StatelessGroup
    public let backend: any Backend
    public let timeout: Duration
    public var rank: Int { group.rank }
    public var size: Int { group.size }
    public var transport: String { "host" }
    private var staging: [UInt8] = []

    public init(group: StatelessGroup, backend: any Backend, timeout: Duration) {
        self.group = group
        self.backend = backend
        self.timeout = timeout
    }

    public func exchangeRows(_ rows: Tensor, sendCounts: [Int], into received: Tensor, receiveCounts: [Int]) throws {
        let rowBytes = rows.shape.rowWidth * rows.dtype.byteCount
        let sent = sendCounts.reduce(0, +), arriving = receiveCounts.reduce(0, +)
        guard sendCounts.count == size, receiveCounts.count == size, received.dtype == rows.dtype,
              received.shape.rowWidth == rows.shape.rowWidth, sent <= rows.shape[0], arriving <= received.shape[0] else {
            throw ComputeError.shapeMismatch(operation: "exchangeRows",
                                             detail: "\(rows) by \(sendCounts) into \(received) by \(receiveCounts) over \(size) ranks")
        }
        if staging.count < rows.byteCount { staging = [UInt8](repeating: 0, count: rows.byteCount) }
        if sent > 0 {
            try backend.synchronize()
            try staging.withUnsafeMutableBytes { try backend.downloadBytes(rows, into: $0) }
        }
        var outgoing: [[UInt8]] = []
        var offset = 0
        for count in sendCounts {
            outgoing.append(Array(staging[(offset * rowBytes)..<((offset + count) * rowBytes)]))
            offset += count
        }
        let incoming = try group.allToAll(outgoing, timeout: timeout)
        var arrived = [UInt8]()
        arrived.reserveCapacity(arriving * rowBytes)
        for (peer, message) in incoming.enumerated() {
            guard message.count == receiveCounts[peer] * rowBytes else {
                throw DistributedError.protocolViolation("rank \(peer) sent \(message.count) bytes for \(receiveCounts[peer]) rows")
            }
            arrived += message
        }
        guard arriving > 0 else { return }
        let target = received.rows(0..<arriving)
        try arrived.withUnsafeBytes {
            try backend.upload(HostTensor(bytes: $0, shape: target.shape, dtype: target.dtype, owner: nil), into: target)
        }
    }
}
