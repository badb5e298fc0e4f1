public import Compute
import Foundation
import Synchronization

/// One rank's NCCL communicator, one GPU per rank: the rows of a MoE layer go from GPU to GPU as
/// grouped point-to-point sends (an all-to-all with counts per peer) on the backend's stream.
///
/// NCCL has no timeouts: a peer that dies mid-exchange leaves the others' kernels waiting for
/// ever. So every exchange ends by polling an event until a deadline, and a communicator that
/// misses it is aborted and refuses further use (like a broken `StatelessGroup`). Joining has the
/// same deadline: ncclCommInitRank waits for every rank, so it runs on a thread of its own and a
/// rank that a peer never joins fails instead of hanging (the thread is left blocked in NCCL,
/// which has nothing to abort before the communicator exists; the failing rank exits).
///
/// - Important: Owned by one rank's step loop, the thread its backend runs on.
public final class NCCLCollectives: DeviceCollectives {
    public let rank: Int
    public let size: Int
    public let transport: String
    private let nccl: NCCLLibrary
    private let backend: CUDABackend
    /// The backend's context, which ``join(uniqueID:)`` makes current off the backend's thread.
    private let context: CUDAContext
    private var communicator: OpaquePointer?
    private var exchanged: OpaquePointer?
    private let timeout: Duration
    private var brokenReason: String?
    /// Raised by a recovery (another thread): the exchange that waits gives up at its next poll.
    public let interruption: InterruptFlag? = InterruptFlag()

    /// A fresh communicator id. Rank 0 makes it and every rank, rank 0 included, passes it to
    /// ``join(uniqueID:)`` (it travels through the rendezvous store).
    public static func makeUniqueID(backend: CUDABackend) throws -> [UInt8] {
        try makeUniqueID(try NCCLLibrary(source: backend.librarySource))
    }

    private static func makeUniqueID(_ nccl: NCCLLibrary) throws -> [UInt8] {
        var id = [UInt8](repeating: 0, count: NCCLLibrary.uniqueIDBytes)
        try id.withUnsafeMutableBytes { try nccl.check(nccl.ncclGetUniqueId($0.baseAddress!), "ncclGetUniqueId") }
        return id
    }

    /// The communicator `uniqueID` names, joined on the backend's thread; returns once all `size`
    /// ranks have joined, or throws when they have not within `timeout`.
    public convenience init(backend: CUDABackend, uniqueID: [UInt8], rank: Int, size: Int, timeout: Duration) throws {
        try self.init(backend: backend, rank: rank, size: size, timeout: timeout)
        try join(uniqueID: uniqueID)
    }

    /// A rank of `size` that has not joined its communicator yet, made on the backend's thread.
    public static func reserve(backend: CUDABackend, rank: Int, size: Int, timeout: Duration) throws -> NCCLCollectives {
        try NCCLCollectives(backend: backend, rank: rank, size: size, timeout: timeout)
    }

    private init(backend: CUDABackend, rank: Int, size: Int, timeout: Duration) throws {
        precondition(size >= 1 && (0..<size).contains(rank), "rank \(rank) outside a group of \(size)")
        nccl = try NCCLLibrary(source: backend.librarySource)
        self.backend = backend
        context = backend.context
        self.rank = rank
        self.size = size
        self.timeout = timeout
        transport = "nccl \(nccl.version)"
        let driver = backend.driver
        try driver.check(driver.cuEventCreate(&exchanged, 2), "cuEventCreate")  // CU_EVENT_DISABLE_TIMING
    }

    /// Joins the group's communicator, its id passed through a store the ranks share: rank 0
    /// makes the id and `publish`es it, the others `fetch` it; then every rank waits at `barrier`
    /// (so that the join's deadline starts when all are there, not while a slow one still loads
    /// its model) and joins. Both a cluster's first group and a standby group of a
    /// reconfiguration join so. It calls only NCCL and the driver, never the backend, so a
    /// reconfiguration's preparation runs it on its own thread while the step loop serves.
    public func join(publish: ([UInt8]) throws -> Void, fetch: () throws -> [UInt8], barrier: () throws -> Void) throws {
        let id: [UInt8]
        if rank == 0 {
            id = try Self.makeUniqueID(nccl)
            try publish(id)
        } else {
            id = try fetch()
        }
        try barrier()
        try join(uniqueID: id)
    }

    /// Joins the communicator `uniqueID` names, once, before the first exchange.
    public func join(uniqueID: [UInt8]) throws {
        guard uniqueID.count == NCCLLibrary.uniqueIDBytes else {
            throw CUDAError.nccl(call: "ncclCommInitRank", code: 4, message: "a unique id of \(uniqueID.count) bytes")
        }
        precondition(communicator == nil, "rank \(rank) joined its communicator twice")
        communicator = try Self.initRank(nccl, context: context, uniqueID: uniqueID, rank: rank, size: size, timeout: timeout)
    }

    /// What the joining thread hands back: the communicator's address, or why it has none.
    private final class Joining: Sendable {
        let outcome = Mutex<Result<Int, any Error>?>(nil)
        let done = DispatchSemaphore(value: 0)
    }

    /// ncclCommInitRank on a thread of its own, waited for until `timeout`.
    private static func initRank(_ nccl: NCCLLibrary, context: CUDAContext, uniqueID: [UInt8], rank: Int, size: Int,
                                 timeout: Duration) throws -> OpaquePointer? {
        let call = "ncclCommInitRank(rank \(rank) of \(size))"
        let joining = Joining()
        let thread = Thread { [nccl] in
            let outcome = Result<Int, any Error> {
                try context.makeCurrent()
                var communicator: OpaquePointer?
                try nccl.check(nccl.commInitRank(&communicator, ranks: size, uniqueID: uniqueID, rank: rank), call)
                return Int(bitPattern: communicator)
            }
            joining.outcome.withLock { $0 = outcome }
            joining.done.signal()
        }
        thread.name = "flexpert-nccl-join"
        thread.start()
        guard joining.done.wait(timeout: .now() + timeout / .seconds(1)) == .success,
              let outcome = joining.outcome.withLock({ $0 }) else {
            throw CUDAError.communicatorTimeout(call: call, timeout: timeout)
        }
        return OpaquePointer(bitPattern: try outcome.get())
    }

    deinit {
        _ = context.driver.cuEventDestroy(exchanged)
        if communicator != nil { _ = nccl.ncclCommDestroy(communicator) }
    }

    public func exchangeRows(_ rows: Tensor, sendCounts: [Int], into received: Tensor, receiveCounts: [Int]) throws {
        if let brokenReason { throw CUDAError.collectiveTimeout("the NCCL communicator is unusable: \(brokenReason)") }
        let rowBytes = rows.shape.rowWidth * rows.dtype.byteCount
        guard sendCounts.count == size, receiveCounts.count == size, received.dtype == rows.dtype,
              received.shape.rowWidth == rows.shape.rowWidth,
              sendCounts.reduce(0, +) * rowBytes <= rows.byteCount, receiveCounts.reduce(0, +) * rowBytes <= received.byteCount else {
            throw ComputeError.shapeMismatch(operation: "exchangeRows",
                                             detail: "\(rows) by \(sendCounts) into \(received) by \(receiveCounts) over \(size) ranks")
        }
        let stream = backend.stream
        try nccl.check(nccl.ncclGroupStart(), "ncclGroupStart")
        var sendOffset = 0, receiveOffset = 0
        for peer in 0..<size {
            if sendCounts[peer] > 0 {
                let start = UnsafeRawPointer(bitPattern: rows.address + UInt(sendOffset * rowBytes))
                try nccl.check(nccl.ncclSend(start, sendCounts[peer] * rowBytes, NCCLLibrary.bytes, Int32(peer), communicator, stream),
                               "ncclSend(\(sendCounts[peer]) rows to rank \(peer))")
            }
            if receiveCounts[peer] > 0 {
                let start = UnsafeMutableRawPointer(bitPattern: received.address + UInt(receiveOffset * rowBytes))
                try nccl.check(nccl.ncclRecv(start, receiveCounts[peer] * rowBytes, NCCLLibrary.bytes, Int32(peer), communicator, stream),
                               "ncclRecv(\(receiveCounts[peer]) rows from rank \(peer))")
            }
            sendOffset += sendCounts[peer]
            receiveOffset += receiveCounts[peer]
        }
        try nccl.check(nccl.ncclGroupEnd(), "ncclGroupEnd")
        try awaitExchange()
    }

    /// Polls until the stream has passed the exchange, NCCL reports an error, or the deadline.
    private func awaitExchange() throws {
        let driver = backend.driver
        try driver.check(driver.cuEventRecord(exchanged, backend.stream), "cuEventRecord")
        let deadline = ContinuousClock.now + timeout
        while true {
            let status = driver.cuEventQuery(exchanged)
            if status == 0 { return }
            if status != 600 { try driver.check(status, "cuEventQuery") }  // 600: CUDA_ERROR_NOT_READY
            var asyncError: Int32 = 0
            _ = nccl.ncclCommGetAsyncError(communicator, &asyncError)
            if asyncError != 0 && asyncError != NCCLLibrary.inProgress {
                brokenReason = "an asynchronous NCCL error"
                _ = nccl.ncclCommAbort(communicator)
                communicator = nil
                try nccl.check(asyncError, "an NCCL exchange over \(size) ranks")
            }
            if interruption?.isRaised == true {
                brokenReason = "the group is being recovered"
                _ = nccl.ncclCommAbort(communicator)
                communicator = nil
                throw CUDAError.collectiveTimeout("an NCCL exchange over \(size) ranks was interrupted: the group is being recovered")
            }
            if ContinuousClock.now > deadline {
                brokenReason = "an exchange took longer than \(timeout)"
                _ = nccl.ncclCommAbort(communicator)
                communicator = nil
                throw CUDAError.collectiveTimeout("an NCCL exchange over \(size) ranks took longer than \(timeout) (a rank died?)")
            }
        }
    }
}
