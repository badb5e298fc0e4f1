import Compute
import ComputeCPU
import Experts
import Parallelism
import TestSupport
import Testing
import Transport

/// Expert slots and dense weights moving between ranks (threads over loopback) in chunks far
/// smaller than what they move: what a newcomer and an EPLB move of any model size rely on.
struct ExpertWeightExchangeTests {
    static let slots = 4, hidden = 8, intermediate = 6

    /// Slot s of rank r holds r · 1000 + s · 100 + i at element i of each of its tensors: the two
    /// projections and GPT-OSS's two biases, which move with them.
    static func weights(rank: Int, on backend: CPUBackend) throws -> ExpertWeights {
        func tensor(_ shape: Shape) throws -> Tensor {
            let tensor = try backend.makeTensor(shape, .float32, in: .weights)
            let perSlot = shape.elementCount / slots
            let values = (0..<shape.elementCount).map { Float(rank * 1000 + ($0 / perSlot) * 100 + $0 % perSlot) }
            try values.withUnsafeBytes { try backend.upload(HostTensor(bytes: $0, shape: shape, dtype: .float32, owner: nil), into: tensor) }
            return tensor
        }
        return ExpertWeights(gateUp: try tensor(Shape(slots, 2 * intermediate, hidden)), down: try tensor(Shape(slots, hidden, intermediate)),
                             gateUpBias: try tensor(Shape(slots, 2 * intermediate)), downBias: try tensor(Shape(slots, hidden)),
                             activation: .clampedSwiGLU(alpha: 1.702, limit: 7))
    }

    static func contents(_ tensor: Tensor, slot: Int, on backend: CPUBackend) throws -> [Float] {
        let piece = tensor.rows(slot..<(slot + 1))
        var values = [Float](repeating: 0, count: piece.elementCount)
        try values.withUnsafeMutableBufferPointer { try backend.download(piece, into: $0) }
        return values
    }

    /// A rebalance with a swap between ranks, a move within a rank, and a slot both read and
    /// written on one rank: every destination ends with its source's old contents, whatever the chunk.
    @Test(arguments: [ExpertWeightExchange.defaultChunkBytes, 100, 7])
    func slotsArriveWholeThroughChunksOfAnySize(chunkBytes: Int) throws {
        let transfers = [
            ExpertTransfer(expert: 0, source: 0, sourceSlot: 0, destination: 1, destinationSlot: 1),
            ExpertTransfer(expert: 1, source: 1, sourceSlot: 1, destination: 0, destinationSlot: 0),
            ExpertTransfer(expert: 2, source: 2, sourceSlot: 3, destination: 2, destinationSlot: 0),
            ExpertTransfer(expert: 3, source: 0, sourceSlot: 2, destination: 2, destinationSlot: 3),
            ExpertTransfer(expert: 4, source: 1, sourceSlot: 3, destination: 2, destinationSlot: 1),
            ExpertTransfer(expert: 5, source: 0, sourceSlot: 3, destination: 2, destinationSlot: 2),
        ]
        let layerBytes = Self.slots * (3 * Self.hidden * Self.intermediate + 2 * Self.intermediate + Self.hidden) * 4
        #expect(chunkBytes >= layerBytes || chunkBytes * 5 < layerBytes / Self.slots, "chunks far smaller than one slot, or whole layers")
        let store = try RendezvousStore(token: "t")
        defer { store.close() }
        let results = onRanks(3) { rank -> (received: Int, slots: [[Float]]) in
            let backend = CPUBackend()
            let weights = try Self.weights(rank: rank, on: backend)
            let group = try StatelessGroup(store: try StoreClient(host: "127.0.0.1", port: store.port, token: "t"), name: "w",
                                           generation: chunkBytes, rank: rank, size: 3)
            defer { group.close() }
            let received = try ExpertWeightExchange.run(transfers, weights: weights, group: group, backend: backend,
                                                        timeout: .seconds(30), chunkBytes: chunkBytes)
            return (received, try (0..<Self.slots).map { slot in
                try weights.slotTensors.flatMap { try Self.contents($0, slot: slot, on: backend) }
            })
        }
        let originals = try (0..<3).map { rank in
            let backend = CPUBackend(), weights = try Self.weights(rank: rank, on: backend)
            return try (0..<Self.slots).map { slot in try weights.slotTensors.flatMap { try Self.contents($0, slot: slot, on: backend) } }
        }
        var expected = originals
        for transfer in transfers { expected[transfer.destination][transfer.destinationSlot] = originals[transfer.source][transfer.sourceSlot] }
        for rank in 0..<3 {
            let result = try results[rank].get()
            #expect(result.received == transfers.filter { $0.destination == rank }.count)
            #expect(result.slots == expected[rank], "rank \(rank)")
        }
    }

    @Test func aDenseWeightMovesInChunksOfRows() throws {
        let store = try RendezvousStore(token: "t")
        defer { store.close() }
        // Rows smaller than a chunk, a vector, a 3-D tensor, and rows larger than a chunk (one row a message).
        let shapes = [Shape(37, 5), Shape(11), Shape(3, 4, 2), Shape(2, 20)]
        let results = onRanks(2) { rank -> [[Float]] in
            let backend = CPUBackend()
            let group = try StatelessGroup(store: try StoreClient(host: "127.0.0.1", port: store.port, token: "t"), name: "d",
                                           generation: 0, rank: rank, size: 2)
            defer { group.close() }
            return try shapes.map { shape in
                let tensor = try backend.makeTensor(shape, .float32, in: .weights)
                let values = (0..<shape.elementCount).map { Float(rank == 0 ? $0 * 3 + 1 : -1) }
                try values.withUnsafeBytes { try backend.upload(HostTensor(bytes: $0, shape: shape, dtype: .float32, owner: nil), into: tensor) }
                if rank == 0 {
                    try WeightChunks.send(tensor, to: 1, group: group, copies: backend, timeout: .seconds(30), chunkBytes: 41)
                } else {
                    try WeightChunks.receive(into: tensor, from: 0, group: group, copies: backend, timeout: .seconds(30), chunkBytes: 41)
                }
                var back = [Float](repeating: 0, count: shape.elementCount)
                try back.withUnsafeMutableBufferPointer { try backend.download(tensor, into: $0) }
                return back
            }
        }
        #expect(try results[1].get() == results[0].get())
        #expect(try results[1].get()[0] == (0..<185).map { Float($0 * 3 + 1) })
    }
}
