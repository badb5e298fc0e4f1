public import Compute
public import Transport

/// The rows' transport of a standby group, made in three parts so that only the step loop's
/// thread touches the rank's backend: the loop reserves it (the device memory it needs) when the
/// preparation starts, the preparation's thread joins it through the cluster's store, and the
/// loop takes the ``transport()`` at the commit.
///
/// - Important: Reserved and taken on the step loop's thread and joined once on the
///   preparation's, in between (the preparation's outcome orders them). The step loop holds the
///   last reference and releases it on its own thread (a peer exchange's deinit waits for the
///   backend's stream).
public protocol StandbyTransport: AnyObject, Sendable {
    /// Meets the group's other ranks through `store`, with `copies` as the device's stream on
    /// this thread. Returns whether the ranks reach each other's memory (weights then go device
    /// to device).
    func join(store: StoreClient, copies: any TensorTransfers) throws -> Bool
    /// The joined transport, on the step loop's thread.
    func transport() -> ExpertTransport
}

/// Reserves the transport of a standby group (generation, rank, size, expert slots per rank) on
/// the step loop's thread: given to an existing rank's ``RankLoop`` by whoever knows its device
/// (peer memory or an NCCL communicator for CUDA ranks); without one, rows are host-staged.
public typealias StandbyTransports = (_ generation: Int, _ rank: Int, _ size: Int, _ slotsPerRank: Int) throws -> any StandbyTransport

/// Rows staged through the host over the group's own connections: nothing to join.
final class HostStagedStandbyTransport: StandbyTransport {
    func join(store: StoreClient, copies: any TensorTransfers) throws -> Bool { false }
    func transport() -> ExpertTransport { .hostStaged }
}
