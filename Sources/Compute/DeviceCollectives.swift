/// Moves rows of device tensors between the ranks of an expert-parallel group: what carries a
/// MoE layer's tokens to the ranks that hold their experts and the results back. NCCL on GPUs;
/// host memory over the group's TCP connections elsewhere.
///
/// Collectives are SPMD: every rank of the group calls the same ones in the same order.
/// - Important: Owned by one rank's step loop, like its backend.
public protocol DeviceCollectives: AnyObject {
    var rank: Int { get }
    var size: Int { get }
    /// The transport's name for logs and errors ("nccl", "host").
    var transport: String { get }
    /// Sends rows `[o_r, o_r + sendCounts[r])` of `rows` to rank r, where o_r is the sum of the
    /// counts before r, and writes the rows rank r sends here at the same kind of offsets of
    /// `received`, in rank order. Counts are rows of `rows.shape.rowWidth` elements; every rank's
    /// `receiveCounts[s]` equals rank s's `sendCounts[rank]`. Returns when the rows are in place
    /// (or the step's later work is ordered after them on the device).
    func exchangeRows(_ rows: Tensor, sendCounts: [Int], into received: Tensor, receiveCounts: [Int]) throws
    /// What ends an exchange's wait from another thread, where the host polls it (`nil`: the
    /// group's own interruption reaches it, or nothing waits).
    var interruption: InterruptFlag? { get }
}
