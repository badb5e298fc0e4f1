public import Compute
public import Transport

/// Rows through host memory and the group's TCP connections: the transport of CPU ranks, and of
/// GPU ranks where NCCL cannot serve (ranks sharing a GPU, which NCCL refuses; elastic groups,
/// whose membership changes between steps).
///
/// Owned by one rank's step loop, like its group and backend.
public final class HostStagedCollectives: DeviceCollectives {
    /// The group's connections carry the rows: its interruption ends their waits.
    public var interruption: InterruptFlag? { nil }

    public let group: StatelessGroup
    public let backend: any Backend
    public let timeout: Duration
    public var rank: Int { group.rank }
    public var size: Int { group.size }
    public var transport: String { "host" }
    /// Host copies of the rows going out and coming in, kept between calls (grown, never shrunk).
    private var outgoing: [UInt8] = []
    private var incoming: [UInt8] = []

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
        if outgoing.count < sent * rowBytes { outgoing = [UInt8](repeating: 0, count: rows.byteCount) }
        if incoming.count < arriving * rowBytes { incoming = [UInt8](repeating: 0, count: received.byteCount) }
        if sent > 0 {
            try backend.synchronize()
            try outgoing.withUnsafeMutableBytes { try backend.downloadBytes(rows.rows(0..<sent), into: $0) }
        }
        func ranges(_ counts: [Int]) -> [Range<Int>] {
            var start = 0
            return counts.map { count in
                defer { start += count * rowBytes }
                return start..<(start + count * rowBytes)
            }
        }
        try outgoing.withUnsafeBytes { sending in
            try incoming.withUnsafeMutableBytes { receiving in
                try group.allToAll(sending: sending, sendRanges: ranges(sendCounts), receiving: receiving,
                                   receiveRanges: ranges(receiveCounts), timeout: timeout)
            }
        }
        guard arriving > 0 else { return }
        let target = received.rows(0..<arriving)
        try incoming.withUnsafeBytes {
            try backend.upload(HostTensor(bytes: UnsafeRawBufferPointer(rebasing: $0[0..<(arriving * rowBytes)]), shape: target.shape,
                                          dtype: target.dtype, owner: nil), into: target)
        }
    }
}
