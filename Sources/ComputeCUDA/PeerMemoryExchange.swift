internal import CUDAShim
public import Compute
import Foundation

/// Expert parallelism between CUDA ranks of one host with no host in the MoE layer: each rank
/// allocates one region at start-up, sized for the most tokens a rank runs in a step, and every
/// rank maps every region through CUDA IPC (ranks on one GPU share its memory; ranks on GPUs with
/// peer access reach each other's over NVLink or PCIe). Dispatch writes each token's row and
/// slot list straight into the regions of the ranks that run its picks, the down projection
/// writes each result straight into its source's region, and flags with a per-layer epoch say
/// when a rank's writes are done (kernels.cu describes the layout and the kernels). Nothing is
/// read by the host during a step, so the steps replay as graphs.
///
/// Ranks that share a GPU need CUDA MPS to run at speed: without it the GPU time-slices between
/// their contexts, and a rank waiting for a flag holds its slice.
///
/// - Important: Owned by one rank's step loop, like its backend: reserved and used there, and
///   released there (its deinit waits for the backend's stream). Only
///   ``join(host:through:set:get:)`` may run on another thread, before the first layer.
public final class PeerMemoryExchange: DeviceExpertExchange {
    /// What a rank's region is sized for.
    public struct Capacity: Sendable, Equatable {
        /// The most tokens one rank runs in a step (its largest batch or prefill chunk).
        public let tokens: Int
        public let hidden: Int
        public let topK: Int
        public let logicalExperts: Int
        public let slotsPerRank: Int
        public let moeLayers: Int
        /// The KV slot of padding tokens, whose picks are not counted as load.
        public let paddingSlot: Int

        public init(tokens: Int, hidden: Int, topK: Int, logicalExperts: Int, slotsPerRank: Int, moeLayers: Int, paddingSlot: Int) {
            self.tokens = tokens
            self.hidden = hidden
            self.topK = topK
            self.logicalExperts = logicalExperts
            self.slotsPerRank = slotsPerRank
            self.moeLayers = moeLayers
            self.paddingSlot = paddingSlot
        }
    }

    /// Where each part of a region starts, and its size (kernels.cu's layout).
    struct Layout: Equatable {
        let slots: Int
        let rows: Int
        let returned: Int
        let bytes: Int

        init(ranks: Int, capacity: Capacity) {
            func aligned(_ value: Int) -> Int { (value + 255) / 256 * 256 }
            slots = 2048
            rows = aligned(slots + ranks * capacity.tokens * capacity.topK * 4)
            returned = aligned(rows + ranks * capacity.tokens * capacity.hidden * 2)
            bytes = aligned(returned + capacity.tokens * capacity.topK * capacity.hidden * 2)
        }
    }

    /// The flags hold one word per rank: 512 bytes of them.
    public static let maxRanks = 64
    static let dispatchFlags = 0, combineFlags = 512, counts = 1024, poison = 1280

    public let rank: Int
    public let size: Int
    public var transport: String { "ipc" }
    public let peerMemory: any PeerMemory
    public let capacity: Capacity
    /// The KV slot of padding tokens, whose picks are not counted: the capacity's, or what the
    /// rank's cache says once it is sized (set before the first step).
    public var paddingSlot: Int
    /// Replica table row width: the count, then up to this many slots.
    public let tableWidth: Int
    let layout: Layout
    private let backend: CUDABackend
    /// The backend's driver, stream and device, which ``join(host:through:set:get:)`` and the
    /// deinit use off its thread.
    private let driver: CUDADriver
    private let stream: OpaquePointer?
    private let deviceOrdinal: Int
    private let region: TensorStorage
    /// The region's shareable allocation (`nil`: a plain one, shared through legacy IPC), the
    /// server that hands it to the peers while they join, and the peers' shareable regions as
    /// mapped here (each mapping keeps its memory alive, its rank dead or not).
    private let shared: SharedDeviceRegion?
    private var server: DescriptorServer?
    private var peerRegions: [SharedDeviceRegion?]
    /// Peers' regions as mapped into this process, by rank (this rank's own: `region`).
    private var mapped: [UInt64]
    private let peers: Tensor
    private let returns: Tensor
    private let epoch: Tensor
    private let failure: Tensor
    /// The dispatch's last-block ticket (kernels.cu's last_block).
    private let ticket: Tensor
    private let counters: Tensor
    private let tables: [Tensor]
    /// Whether each MoE layer's table has been set (a layer without one is refused: zeros would route nowhere).
    private var placed: [Bool]
    private let timeoutNanoseconds: Int64
    private var countBuffer: [Int64]

    /// How a peer reaches a rank's region: through the allocation's descriptor server (the
    /// memory then outlives the rank), or by a legacy IPC handle (freed with the rank) where the
    /// driver could not make a shareable allocation.
    enum Access: Equatable {
        case shared(socket: String, secret: [UInt8], mappedBytes: Int)
        case ipc(handle: [UInt8])
    }

    /// What a rank publishes for its peers: how to reach its region, its device, host and layout size.
    struct Card: Equatable {
        let access: Access
        let deviceOrdinal: Int
        let host: String
        let bytes: Int

        var encoded: [UInt8] {
            var out: [UInt8] = []
            func integer(_ value: Int) { withUnsafeBytes(of: Int64(value).littleEndian) { out += $0 } }
            switch access {
            case .ipc: out.append(1)
            case .shared: out.append(2)
            }
            integer(deviceOrdinal)
            integer(bytes)
            integer(host.utf8.count)
            out += Array(host.utf8)
            switch access {
            case .ipc(let handle): out += handle
            case .shared(let socket, let secret, let mappedBytes):
                integer(mappedBytes)
                out += secret
                out += Array(socket.utf8)
            }
            return out
        }

        init(access: Access, deviceOrdinal: Int, host: String, bytes: Int) {
            self.access = access
            self.deviceOrdinal = deviceOrdinal
            self.host = host
            self.bytes = bytes
        }

        init(decoding data: [UInt8]) throws {
            var offset = 0
            func take(_ count: Int) throws -> ArraySlice<UInt8> {
                guard count >= 0, data.count - offset >= count else { throw PeerMemoryError.unavailable("a peer card of \(data.count) bytes") }
                defer { offset += count }
                return data[offset..<(offset + count)]
            }
            func integer() throws -> Int {
                var value: Int64 = 0
                for (index, byte) in try take(8).enumerated() { value |= Int64(byte) << (8 * index) }
                return Int(value)
            }
            let kind = try take(1).first!
            deviceOrdinal = try integer()
            bytes = try integer()
            host = String(decoding: try take(try integer()), as: UTF8.self)
            switch kind {
            case 1: access = .ipc(handle: Array(try take(Int(FLEXPERT_CUDA_IPC_HANDLE_BYTES))))
            case 2:
                let mappedBytes = try integer()
                let secret = Array(try take(DescriptorServer.secretBytes))
                access = .shared(socket: String(decoding: try take(data.count - offset), as: UTF8.self), secret: secret,
                                 mappedBytes: mappedBytes)
            default: throw PeerMemoryError.unavailable("a peer card of an unknown kind \(kind)")
            }
            guard offset == data.count else { throw PeerMemoryError.unavailable("a peer card with \(data.count - offset) bytes too many") }
        }
    }

    /// Joins the exchange of `size` ranks on the backend's thread: ``reserve(backend:rank:size:capacity:timeout:)``,
    /// then ``join(host:through:set:get:)`` with the backend's own stream.
    public static func join(backend: CUDABackend, rank: Int, size: Int, capacity: Capacity, timeout: Duration,
                            host: String? = nil, set: (String, [UInt8]) throws -> Void, get: (String) throws -> [UInt8]) throws -> PeerMemoryExchange {
        let exchange = try reserve(backend: backend, rank: rank, size: size, capacity: capacity, timeout: timeout)
        try exchange.join(host: host, through: backend, set: set, get: get)
        return exchange
    }

    /// Allocates everything this rank of `size` needs, on the backend's thread (the step loop's).
    /// - Parameter timeout: how long a layer waits for a peer's rows before it gives up.
    public static func reserve(backend: CUDABackend, rank: Int, size: Int, capacity: Capacity,
                               timeout: Duration) throws -> PeerMemoryExchange {
        guard size >= 1, size <= maxRanks, (0..<size).contains(rank) else {
            throw PeerMemoryError.unavailable("\(size) ranks: the peer exchange takes 1 to \(maxRanks)")
        }
        // ep_sort_received keeps two ints per slot in 48 KiB of shared memory.
        guard capacity.hidden % 8 == 0, capacity.topK >= 1, capacity.topK <= 32, capacity.tokens >= 1,
              capacity.slotsPerRank >= 1, capacity.slotsPerRank <= 6144, capacity.slotsPerRank * size >= capacity.logicalExperts else {
            throw ComputeError.shapeMismatch(operation: "PeerMemoryExchange", detail: "\(capacity) over \(size) ranks")
        }
        return try PeerMemoryExchange(backend: backend, rank: rank, size: size, capacity: capacity, timeout: timeout)
    }

    /// Meets the peers, once, before the first layer: publishes this rank's card under `rank`
    /// with `set`, reads every peer's with `get` (which waits for it), opens their regions,
    /// agrees with them that every rank could (`ready-rank`), and writes the peers' addresses
    /// with `copies`. It calls only the driver and `copies`, never the backend, so a
    /// reconfiguration's preparation runs it on its own thread with its ``CUDATransferStream``
    /// while the step loop serves.
    ///
    /// Throws ``PeerMemoryError/unavailable(_:)`` on every rank alike when some rank cannot reach
    /// another's memory (another host, no peer access, a failed open): the caller then uses NCCL.
    public func join(host: String? = nil, through copies: any TensorTransfers, set: (String, [UInt8]) throws -> Void,
                     get: (String) throws -> [UInt8]) throws {
        let host = host ?? Self.machineName()
        // Everything was allocated before the card goes out: once peers have it, they may write here.
        let access: Access
        if let shared {
            let descriptor = try shared.exportDescriptor()
            defer { _ = Glibc.close(descriptor) }
            let server = try DescriptorServer(descriptor: descriptor)
            self.server = server
            access = .shared(socket: server.name, secret: server.secret, mappedBytes: shared.bytes)
        } else {
            var handle = [UInt8](repeating: 0, count: Int(FLEXPERT_CUDA_IPC_HANDLE_BYTES))
            try handle.withUnsafeMutableBytes {
                try driver.check(driver.cuIpcGetMemHandle($0.baseAddress!, UInt64(region.address)), "cuIpcGetMemHandle")
            }
            access = .ipc(handle: handle)
        }
        // Every peer has taken the region (or given up) once the ready round is over.
        defer {
            server?.close()
            server = nil
        }
        try set("\(rank)", Card(access: access, deviceOrdinal: deviceOrdinal, host: host, bytes: layout.bytes).encoded)
        var problem: String?
        for peer in 0..<size where peer != rank && problem == nil {
            do {
                problem = try open(peer: peer, card: try Card(decoding: get("\(peer)")), host: host)
            } catch {
                problem = "rank \(peer): \(error)"
            }
        }
        try set("ready-\(rank)", Array((problem ?? "").utf8))
        for peer in 0..<size where peer != rank && problem == nil {
            let verdict = String(decoding: try get("ready-\(peer)"), as: UTF8.self)
            if !verdict.isEmpty { problem = "rank \(peer): \(verdict)" }
        }
        if let problem { throw PeerMemoryError.unavailable(problem) }
        try upload(addresses: mapped, into: peers, through: copies)
        try upload(addresses: mapped.map { $0 + UInt64(layout.returned) }, into: returns, through: copies)
        try copies.synchronize()
    }

    /// Maps `peer`'s region, or says why it cannot be (nil: mapped).
    private func open(peer: Int, card: Card, host: String) throws -> String? {
        if card.host != host { return "rank \(peer) runs on \(card.host), not \(host)" }
        if case .shared(_, _, let mappedBytes) = card.access, mappedBytes < layout.bytes {
            return "rank \(peer) shares a region of \(mappedBytes) bytes, smaller than its layout's \(layout.bytes)"
        }
        if card.bytes != layout.bytes {
            return "rank \(peer) sized its region for another model or batch (\(card.bytes) bytes, here \(layout.bytes))"
        }
        var access: Int32 = 1
        if card.deviceOrdinal != deviceOrdinal {
            try driver.check(driver.cuDeviceCanAccessPeer(&access, Int32(deviceOrdinal), Int32(card.deviceOrdinal)),
                             "cuDeviceCanAccessPeer")
        }
        if access == 0 { return "GPU \(deviceOrdinal) has no peer access to GPU \(card.deviceOrdinal) (rank \(peer))" }
        switch card.access {
        case .shared(let socket, let secret, let mappedBytes):
            let descriptor = try DescriptorServer.fetch(name: socket, secret: secret, timeout: .seconds(10))
            defer { _ = Glibc.close(descriptor) }
            let region = try SharedDeviceRegion.map(driver: driver, descriptor: descriptor, device: deviceOrdinal, bytes: mappedBytes)
            peerRegions[peer] = region
            mapped[peer] = region.address
        case .ipc(let handle):
            var address: UInt64 = 0
            let result = handle.withUnsafeBytes {
                // CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS: peer access between two GPUs is enabled by the open.
                flexpert_cuda_ipc_open_mem_handle(driver.cuIpcOpenMemHandle, &address, $0.baseAddress!, 1)
            }
            try driver.check(result, "cuIpcOpenMemHandle(rank \(peer)'s region)")
            mapped[peer] = address
        }
        return nil
    }

    private init(backend: CUDABackend, rank: Int, size: Int, capacity: Capacity, timeout: Duration) throws {
        self.backend = backend
        driver = backend.driver
        stream = backend.stream
        deviceOrdinal = backend.deviceOrdinal
        self.rank = rank
        self.size = size
        self.capacity = capacity
        paddingSlot = capacity.paddingSlot
        peerMemory = CUDAPeerMemory(backend: backend)
        layout = Layout(ranks: size, capacity: capacity)
        // A shareable allocation where the driver makes one, so that a lost peer's region stays mapped here;
        // FLEXPERT_PEER_REGIONS=ipc-handles shares by legacy handles instead (to compare).
        let legacy = ProcessInfo.processInfo.environment["FLEXPERT_PEER_REGIONS"] == "ipc-handles"
        shared = legacy ? nil : try? SharedDeviceRegion.allocate(driver: driver, device: deviceOrdinal, bytes: layout.bytes)
        if let shared {
            // The storage keeps the allocation mapped while any tensor of it lives (an interruption's poison word among them).
            region = TensorStorage(address: UInt(shared.address), byteCount: layout.bytes, release: { withExtendedLifetime(shared) {} })
        } else {
            region = try backend.allocate(byteCount: layout.bytes)
        }
        peerRegions = [SharedDeviceRegion?](repeating: nil, count: size)
        mapped = [UInt64](repeating: 0, count: size)
        mapped[rank] = UInt64(region.address)
        let width = capacity.slotsPerRank * size - capacity.logicalExperts + 1
        tableWidth = width
        func make(_ count: Int) throws -> Tensor { try backend.makeTensor(Shape(count), .int32, in: .weights) }
        peers = try make(2 * size)
        returns = try make(2 * size)
        epoch = try make(2)
        failure = try make(1)
        ticket = try make(1)
        let slotsPerLayer = capacity.slotsPerRank * size
        counters = try make(2 * max(1, capacity.moeLayers * slotsPerLayer))
        tables = try (0..<capacity.moeLayers).map { _ in try make(capacity.logicalExperts * (width + 1)) }
        placed = [Bool](repeating: false, count: capacity.moeLayers)
        countBuffer = [Int64](repeating: 0, count: max(1, capacity.moeLayers * slotsPerLayer))
        timeoutNanoseconds = max(1, timeout.nanoseconds)
    }

    deinit {
        // Kernels queued before this point may still write to the peers' regions.
        _ = driver.cuStreamSynchronize(stream)
        for (peer, address) in mapped.enumerated() where peer != rank && address != 0 && peerRegions[peer] == nil {
            _ = driver.cuIpcCloseMemHandle(address)
        }
        server?.close()
    }

    /// Device addresses as the kernels read them (`const u64 *`): two little-endian int32 words each.
    private func upload(addresses: [UInt64], into tensor: Tensor, through copies: any TensorTransfers) throws {
        try copies.upload(addresses.flatMap { [Int32(truncatingIfNeeded: $0), Int32(truncatingIfNeeded: $0 >> 32)] }, into: tensor)
    }

    public func setPlacement(moeLayer: Int, table: [Int32]) throws {
        guard tables.indices.contains(moeLayer), table.count == capacity.logicalExperts * (tableWidth + 1) else {
            throw ComputeError.shapeMismatch(operation: "setPlacement",
                                             detail: "a table of \(table.count) for MoE layer \(moeLayer) of \(tables.count)")
        }
        guard (0..<capacity.logicalExperts).allSatisfy({ logical in
            let row = logical * (tableWidth + 1), count = Int(table[row])
            return count >= 1 && count <= tableWidth
                && table[(row + 1)..<(row + 1 + count)].allSatisfy { (0..<Int32(capacity.slotsPerRank * size)).contains($0) }
        }) else {
            throw ComputeError.shapeMismatch(operation: "setPlacement", detail: "a replica table with an expert of no slot, or a slot out of range")
        }
        try backend.upload(table, into: tables[moeLayer])
        // The host array dies with this call; the copy must be done with it first.
        try backend.synchronize()
        placed[moeLayer] = true
    }

    public func runExperts(_ x: Tensor, routing: Routing, batch: AttentionBatch, experts: ExpertWeights, moeLayer: Int,
                           into out: Tensor) throws {
        let tokens = x.shape[0], hidden = capacity.hidden, topK = capacity.topK, slots = capacity.slotsPerRank
        guard tokens <= capacity.tokens, x.shape.rowWidth == hidden, out.shape[0] == tokens, out.shape.rowWidth == hidden,
              routing.topK == topK, routing.experts.shape[0] == tokens, experts.expertCount == slots,
              experts.hiddenSize == hidden, experts.intermediateSize % 8 == 0, tables.indices.contains(moeLayer), placed[moeLayer] else {
            throw ComputeError.shapeMismatch(operation: "PeerMemoryExchange.runExperts",
                                             detail: "x \(x.shape), top-\(routing.topK), \(experts.expertCount) slots, MoE layer \(moeLayer) "
                                                 + "for \(capacity)")
        }
        guard x.dtype == .bfloat16, out.dtype == .bfloat16, experts.gateUp.dtype == .bfloat16 else {
            throw ComputeError.unsupportedDType(operation: "PeerMemoryExchange.runExperts", x.dtype)
        }
        let activation = experts.activationArguments
        let kernels = backend.kernels, base = mapped[rank], intermediate = experts.intermediateSize
        let slotsPerLayer = slots * size, perSource = capacity.tokens * topK, limit = Int32(Self.gemvEntries)
        // kernels.cu describes the layer's launches; a rank with no tokens signals its (empty) dispatch on its own.
        if tokens > 0 {
            try kernels.epDispatch.launch(
                grid: (UInt32(tokens), 1, 1), block: 128,
                .pointer(x.device), .pointer(routing.experts.device), .pointer(batch.positions.device), .pointer(batch.slotMapping.device),
                .int32(Int32(paddingSlot)), .pointer(tables[moeLayer].device), .int32(Int32(tableWidth)),
                .pointer(counters.device + UInt64(moeLayer * slotsPerLayer * 8)), .pointer(peers.device), .int32(Int32(rank)),
                .int32(Int32(size)), .int32(Int32(slots)), .int32(Int32(topK)), .int32(Int32(hidden)), .int32(Int32(capacity.tokens)),
                .int64(Int64(layout.slots)), .int64(Int64(layout.rows)), .pointer(epoch.device), .pointer(ticket.device))
        } else {
            try signal(advance: true, flags: Self.dispatchFlags, count: 0)
        }
        let offsets = try backend.makeTensor(Shape(slots + 1), .int32, in: .scratch)
        let sorted = try backend.makeTensor(Shape(size * perSource), .int32, in: .scratch)
        let activated = try backend.makeTensor(Shape(size * perSource, intermediate), .bfloat16, in: .scratch)
        try kernels.epSortReceived.launch(
            grid: (1, 1, 1), block: 1024, sharedBytes: UInt32(8 * slots),
            .pointer(base + UInt64(Self.counts)), .pointer(base + UInt64(layout.slots)), .int32(Int32(size)),
            .int32(Int32(capacity.tokens)), .int32(Int32(topK)), .int32(Int32(slots)), .pointer(offsets.device), .pointer(sorted.device),
            .pointer(epoch.device), .pointer(base + UInt64(Self.dispatchFlags)), .pointer(base + UInt64(Self.poison)),
            .int64(timeoutNanoseconds), .pointer(failure.device), .pointer(peers.device))
        // Both kinds of projection are launched; each returns at once unless the received count is its kind's.
        try kernels.epGEMVGateUp.launch(
            grid: (Self.gemvEntryStride, Self.blocks(intermediate, of: Self.gemvColumnsPerBlock), 1), block: Self.gemvThreads,
            .pointer(base + UInt64(layout.rows)), .pointer(experts.gateUp.device), .pointer(offsets.device), .pointer(sorted.device),
            .pointer(base + UInt64(layout.slots)), .pointer(activated.device), .int32(Int32(topK)), .int32(Int32(hidden)),
            .int32(Int32(intermediate)), .int32(Int32(slots)), .int32(limit), .pointer(experts.gateUpBias?.device ?? 0),
            .int32(activation.clamped ? 1 : 0), .float(activation.alpha), .float(activation.limit))
        // A slot gets at most a row per token of every rank: as on one rank, row tiles of a slot
        // spread over up to 8 blocks, from that bound (the counts are not known here).
        let rowSplit = UInt32(min(max((tokens * size + 63) / 64, 1), 8))
        try kernels.epExpertGateUp.launch(
            grid: (Self.blocks(intermediate, of: 64), UInt32(slots), rowSplit), block: 256,
            sharedBytes: UInt32(CUDAKernels.expertSharedBytes(gated: true)),
            .pointer(base + UInt64(layout.rows)), .pointer(experts.gateUp.device), .pointer(offsets.device), .pointer(sorted.device),
            .pointer(activated.device), .int32(Int32(topK)), .int32(Int32(hidden)), .int32(Int32(intermediate)), .int32(Int32(slots)),
            .int32(limit), .pointer(experts.gateUpBias?.device ?? 0), .int32(activation.clamped ? 1 : 0), .float(activation.alpha),
            .float(activation.limit))
        try kernels.epExpertDown.launch(
            grid: (Self.blocks(hidden, of: 64), UInt32(slots), rowSplit), block: 256,
            sharedBytes: UInt32(CUDAKernels.expertSharedBytes(gated: false)),
            .pointer(activated.device), .pointer(experts.down.device), .pointer(offsets.device), .pointer(sorted.device),
            .pointer(returns.device), .int64(Int64(perSource)), .int32(Int32(intermediate)), .int32(Int32(hidden)), .int32(Int32(slots)),
            .int32(limit), .pointer(experts.downBias?.device ?? 0))
        try kernels.epGEMVDown.launch(
            grid: (Self.gemvEntryStride, Self.blocks(hidden, of: Self.gemvColumnsPerBlock), 1), block: Self.gemvThreads,
            .pointer(activated.device), .pointer(experts.down.device), .pointer(offsets.device), .pointer(sorted.device),
            .pointer(base + UInt64(layout.slots)), .pointer(returns.device), .int64(Int64(perSource)), .int32(Int32(intermediate)),
            .int32(Int32(hidden)), .int32(Int32(slots)), .int32(limit), .pointer(experts.downBias?.device ?? 0))
        try signal(advance: false, flags: Self.combineFlags, count: -1)
        // Also where this rank has no tokens: every rank must be done with this layer's rows before
        // this one sends the next layer's.
        try kernels.epWait.launch(
            grid: (1, 1, 1), block: 64,
            .pointer(epoch.device), .pointer(base + UInt64(Self.combineFlags)), .pointer(base + UInt64(Self.poison)),
            .int32(Int32(size)), .int64(timeoutNanoseconds), .pointer(failure.device), .pointer(peers.device))
        if tokens > 0 {
            try kernels.combine.launch(
                grid: (UInt32(tokens), 1, 1), block: 256,
                .pointer(base + UInt64(layout.returned)), .pointer(0), .pointer(routing.weights.device), .pointer(out.device),
                .int32(Int32(topK)), .int32(Int32(hidden)))
        }
    }

    private func signal(advance: Bool, flags: Int, count: Int) throws {
        try backend.kernels.epSignal.launch(
            grid: (1, 1, 1), block: 64,
            .pointer(epoch.device), .int32(advance ? 1 : 0), .pointer(peers.device), .int32(Int32(rank)), .int32(Int32(size)),
            .int64(Int64(flags)), .int32(Int32(count)))
    }

    /// Received entries up to which the projections run as matrix-vector kernels (as
    /// CUDABackend.gemvExpertRows on one rank: decode at small batches).
    static let gemvEntries = 64
    /// The matrix-vector kernels' blocks along the entries: each takes every 16th, so that a few
    /// entries spread over the SMs and the blocks of a grouped-GEMM step return cheaply.
    static let gemvEntryStride: UInt32 = 16
    /// Four warps of a matrix-vector block, each computing GEMV_COLUMNS (4) output columns.
    static let gemvThreads: UInt32 = 128
    static let gemvColumnsPerBlock = 16

    public func takeCounts() throws -> [Int64] {
        try countBuffer.withUnsafeMutableBytes { try backend.downloadBytes(counters, into: $0) }
        try backend.driver.check(backend.driver.cuMemsetD8(counters.device, 0, counters.byteCount), "cuMemsetD8")
        return countBuffer
    }

    /// Whether this rank's region outlives it in its peers (a shareable allocation; otherwise a
    /// legacy IPC handle, freed with the rank).
    public var regionOutlivesRank: Bool { shared != nil }

    public var poison: Tensor { Tensor(storage: region, byteOffset: Self.poison, shape: Shape(2), dtype: .int32) }

    public func checkHealth() throws {
        var word: [Int32] = [0]
        try word.withUnsafeMutableBufferPointer { try backend.download(failure, into: $0) }
        guard word[0] != 0 else { return }
        if word[0] < 0 { throw CUDAError.collectiveTimeout("another rank of the group gave up waiting for a peer in a MoE layer") }
        throw CUDAError.collectiveTimeout("a MoE layer waited longer than \(Duration.nanoseconds(timeoutNanoseconds)) for rank \(word[0] - 1)'s rows")
    }

    private static func blocks(_ count: Int, of size: Int) -> UInt32 { UInt32((count + size - 1) / size) }

    /// This machine's name: ranks with the same one share a host (no DNS lookup, unlike ProcessInfo's).
    private static func machineName() -> String {
        var name = [CChar](repeating: 0, count: 256)
        guard gethostname(&name, name.count - 1) == 0 else { return "localhost" }
        return cText(name)
    }
}

public enum PeerMemoryError: Error, CustomStringConvertible {
    /// Some rank cannot map another's memory; every rank of the group throws this alike.
    case unavailable(String)

    public var description: String {
        switch self {
        case .unavailable(let reason): "the peer-memory exchange is not available: \(reason)"
        }
    }
}
