import Compute
import ComputeCPU
import Foundation
import Testing

/// Operators on hand-computed cases.
@Suite struct CPUOperatorTests {
    let backend = CPUBackend()

    func tensor(_ values: [Float], _ shape: Shape) throws -> Tensor {
        let tensor = try backend.makeTensor(shape, .float32, in: .weights)
        try values.withUnsafeBytes { try backend.upload(HostTensor(bytes: $0, shape: shape, dtype: .float32, owner: nil), into: tensor) }
        return tensor
    }

    func integers(_ values: [Int32], _ shape: Shape) throws -> Tensor {
        let tensor = try backend.makeTensor(shape, .int32, in: .weights)
        try values.withUnsafeBytes { try backend.upload(HostTensor(bytes: $0, shape: shape, dtype: .int32, owner: nil), into: tensor) }
        return tensor
    }

    func values(_ tensor: Tensor) throws -> [Float] {
        var out = [Float](repeating: 0, count: tensor.elementCount)
        try out.withUnsafeMutableBufferPointer { try backend.download(tensor, into: $0) }
        return out
    }

    @Test func matmulWithBias() throws {
        let x = try tensor([1, 2, 3, 4, 5, 6], Shape(2, 3))
        let weight = try tensor([1, 0, 0, 0, 1, 1], Shape(2, 3))
        let bias = try tensor([10, 20], Shape(2))
        let out = try backend.makeTensor(Shape(2, 2), .float32, in: .scratch)
        try backend.matmul(x, weight: weight, bias: bias, into: out)
        #expect(try values(out) == [11, 25, 14, 31])
    }

    @Test func rmsNormPerRow() throws {
        let x = try tensor([3, 4, 0, 0, 1, 0], Shape(3, 2))
        let weight = try tensor([1, 2], Shape(2))
        let out = try backend.makeTensor(Shape(3, 2), .float32, in: .scratch)
        try backend.rmsNorm(x, weight: weight, epsilon: 1e-6, into: out)
        let result = try values(out)
        let scale = 1 / Float(12.5 + 1e-6).squareRoot()
        #expect(abs(result[0] - 3 * scale) < 1e-6 && abs(result[1] - 8 * scale) < 1e-6)
        #expect(result[2] == 0 && result[3] == 0, "a zero row stays zero")
        #expect(abs(result[4] - Float(2).squareRoot()) < 1e-5 && result[5] == 0)
    }

    @Test func rotaryRotatesHalves() throws {
        // One head of dim 2 at position 1 with angle π/2: (x, y) → (−y, x).
        let x = try tensor([1, 2], Shape(1, 2))
        let table = RotaryTable(cos: try tensor([1, 0], Shape(2, 1)), sin: try tensor([0, 1], Shape(2, 1)))
        try backend.rotary(x, positions: try integers([1], Shape(1)), table: table, headDim: 2)
        #expect(try values(x) == [-2, 1])
    }

    @Test func routeTopKPicksAndRenormalises() throws {
        let logits = try tensor([0, 2, 1, (4 as Float).squareRoot()], Shape(1, 4))
        let routing = Routing(experts: try backend.makeTensor(Shape(1, 2), .int32, in: .scratch),
                              weights: try backend.makeTensor(Shape(1, 2), .float32, in: .scratch))
        try backend.routeTopK(logits, bias: nil, parameters: .init(topK: 2, isRenormalized: true, scoring: .softmax), into: routing)
        var picks = [Int32](repeating: 0, count: 2)
        try picks.withUnsafeMutableBufferPointer { try backend.download(routing.experts, into: $0) }
        #expect(picks == [1, 3], "ties go to the lower expert")
        #expect(try values(routing.weights) == [0.5, 0.5])
    }

    @Test func attentionOverOneKeyReturnsItsValue() throws {
        let cache = LayerKVCache(keys: try tensor([1, 0, 0, 1, 0, 0, 0, 0], Shape(1, 4, 2)),
                                 values: try tensor([5, 6, 7, 8, 0, 0, 0, 0], Shape(1, 4, 2)))
        let batch = AttentionBatch(tokenCount: 2, positions: try integers([0, 1], Shape(2)), slotMapping: try integers([0, 1], Shape(2)),
                                   tokenRequests: try integers([0, 0], Shape(2)), blockTables: try integers([0], Shape(1, 1)))
        let queries = try tensor([1, 0, 0, 0], Shape(2, 2))
        let out = try backend.makeTensor(Shape(2, 2), .float32, in: .scratch)
        try backend.attention(queries, cache: cache, batch: batch,
                              parameters: AttentionParameters(headCount: 1, kvHeadCount: 1, headDim: 2, scale: 1, slidingWindow: nil),
                              into: out)
        let result = try values(out)
        #expect(result[0] == 5 && result[1] == 6, "position 0 sees only key 0")
        #expect(abs(result[2] - 6) < 1e-6 && abs(result[3] - 7) < 1e-6, "equal scores average both values")
        let windowed = try backend.makeTensor(Shape(2, 2), .float32, in: .scratch)
        try backend.attention(queries, cache: cache, batch: batch,
                              parameters: AttentionParameters(headCount: 1, kvHeadCount: 1, headDim: 2, scale: 1, slidingWindow: 1),
                              into: windowed)
        #expect(try values(windowed)[2...] == [7, 8], "a window of one sees only itself")
    }

    @Test func expertMLPSumsPicksByWeight() throws {
        // Two experts of intermediate 1 on hidden 1: expert e computes (e + 1) · silu(x) · x.
        let experts = ExpertWeights(gateUp: try tensor([1, 1, 1, 1], Shape(2, 2, 1)), down: try tensor([1, 2], Shape(2, 1, 1)))
        let x = try tensor([2], Shape(1, 1))
        let routing = Routing(experts: try integers([1, 0], Shape(1, 2)), weights: try tensor([0.25, 0.75], Shape(1, 2)))
        let out = try backend.makeTensor(Shape(1, 1), .float32, in: .scratch)
        try backend.expertMLP(x, experts: experts, routing: routing, into: out)
        let silu = Float(2 / (1 + Foundation.exp(-2.0)) * 2)
        #expect(abs(try values(out)[0] - (0.25 * 2 * silu + 0.75 * silu)) < 1e-5)
    }
}
