import Compute
import ComputeCUDA
import Experts
import Parallelism
import Testing
import Transport

/// Weights device to device between ranks (threads, each an emulated GPU) through CUDAPeerMemory:
/// what a newcomer's weights and an EPLB move take when the ranks reach each other's memory.
struct EmulatedPeerMemoryTests {
    static let slots = 4, hidden = 8, intermediate = 8

    /// Slot s of rank r holds r · 16 + s · 4 + i mod 4 at element i (exact in bf16).
    static func weights(rank: Int, on backend: CUDABackend) throws -> ExpertWeights {
        func tensor(_ shape: Shape) throws -> Tensor {
            let tensor = try backend.makeTensor(shape, .bfloat16, in: .weights)
            let perSlot = shape.elementCount / slots
            let values = (0..<shape.elementCount).map { Float(rank * 16 + ($0 / perSlot) * 4 + $0 % 4) }
            try values.withUnsafeBytes { try backend.upload(HostTensor(bytes: $0, shape: shape, dtype: .float32, owner: nil), into: tensor) }
            return tensor
        }
        return ExpertWeights(gateUp: try tensor(Shape(slots, 2 * intermediate, hidden)), down: try tensor(Shape(slots, hidden, intermediate)))
    }

    static func contents(_ weights: ExpertWeights, on backend: CUDABackend) throws -> [[Float]] {
        try (0..<slots).map { slot in
            try [weights.gateUp, weights.down].flatMap { tensor in
                let piece = tensor.rows(slot..<(slot + 1))
                var values = [Float](repeating: 0, count: piece.elementCount)
                try values.withUnsafeMutableBufferPointer { try backend.download(piece, into: $0) }
                return values
            }
        }
    }

    /// Runs `body` on `count` ranks (threads with a group each over one store); the results by rank.
    static func onRanks<Value: Sendable>(_ count: Int, name: String, _ body: @escaping @Sendable (Int, StatelessGroup) throws -> Value)
        throws -> [Value] {
        let store = try RendezvousStore(token: "t")
        defer { store.close() }
        let port = store.port
        return try onThreadRanks(count) { rank in
            let group = try StatelessGroup(store: try StoreClient(host: "127.0.0.1", port: port, token: "t"), name: name,
                                           generation: 0, rank: rank, size: count)
            defer { group.close() }
            return try body(rank, group)
        }
    }

    /// A rebalance with a swap between ranks, a move within a rank, a slot both read and written
    /// on one rank, and a rank that only receives: every destination ends with its source's old
    /// contents, copied from the sources' memory.
    @Test func expertSlotsMoveDeviceToDevice() throws {
        let transfers = [
            ExpertTransfer(expert: 0, source: 0, sourceSlot: 0, destination: 1, destinationSlot: 1),
            ExpertTransfer(expert: 1, source: 1, sourceSlot: 1, destination: 0, destinationSlot: 0),
            ExpertTransfer(expert: 2, source: 1, sourceSlot: 3, destination: 1, destinationSlot: 0),
            ExpertTransfer(expert: 3, source: 0, sourceSlot: 2, destination: 2, destinationSlot: 3),
            ExpertTransfer(expert: 4, source: 1, sourceSlot: 3, destination: 2, destinationSlot: 1),
            ExpertTransfer(expert: 5, source: 0, sourceSlot: 3, destination: 2, destinationSlot: 2),
        ]
        let results = try Self.onRanks(3, name: "experts") { rank, group -> (received: Int, slots: [[Float]]) in
            let backend = try EmulatedCUDATests.emulatedBackend()
            let weights = try Self.weights(rank: rank, on: backend)
            let received = try ExpertWeightExchange.run(transfers, weights: weights, group: group, backend: backend,
                                                        timeout: .seconds(30), peer: CUDAPeerMemory(backend: backend))
            return (received, try Self.contents(weights, on: backend))
        }
        let backend = try EmulatedCUDATests.emulatedBackend()
        let originals = try (0..<3).map { try Self.contents(try Self.weights(rank: $0, on: backend), on: backend) }
        var expected = originals
        for transfer in transfers { expected[transfer.destination][transfer.destinationSlot] = originals[transfer.source][transfer.sourceSlot] }
        for rank in 0..<3 {
            #expect(results[rank].received == transfers.filter { $0.destination == rank }.count)
            #expect(results[rank].slots == expected[rank], "rank \(rank)")
        }
    }

    /// Dense weights of any size in one message of handles: the receiver copies them and says so,
    /// and a sender whose tensors do not match what the receiver expects is refused.
    @Test func denseWeightsMoveDeviceToDevice() throws {
        let shapes = [Shape(37, 5), Shape(11), Shape(3, 4, 2)]
        let results = try Self.onRanks(2, name: "dense") { rank, group -> [[Float]] in
            let backend = try EmulatedCUDATests.emulatedBackend()
            let peer = CUDAPeerMemory(backend: backend)
            let tensors = try shapes.map { shape in
                let tensor = try backend.makeTensor(shape, .float32, in: .weights)
                let values = (0..<shape.elementCount).map { Float(rank == 0 ? $0 * 3 + 1 : -1) }
                try values.withUnsafeBytes { try backend.upload(HostTensor(bytes: $0, shape: shape, dtype: .float32, owner: nil), into: tensor) }
                return tensor
            }
            if rank == 0 {
                try WeightChunks.send(tensors, to: 1, group: group, peer: peer, timeout: .seconds(30))
                #expect(throws: TransportError.self) {
                    try WeightChunks.send(Array(tensors.prefix(2)), to: 1, group: group, peer: peer, timeout: .seconds(30))
                }
            } else {
                try WeightChunks.receive(into: tensors, from: 0, group: group, peer: peer, timeout: .seconds(30))
                #expect(throws: TransportError.self) {
                    try WeightChunks.receive(into: tensors, from: 0, group: group, peer: peer, timeout: .seconds(30))
                }
            }
            return try tensors.map { tensor in
                var back = [Float](repeating: 0, count: tensor.elementCount)
                try back.withUnsafeMutableBufferPointer { try backend.download(tensor, into: $0) }
                return back
            }
        }
        #expect(results[1] == results[0])
        let first: [Float] = (0..<185).map { Float($0 * 3 + 1) }
        #expect(results[1][0] == first)
    }
}
