import Checkpoint
import Compute
import Foundation
import Testing

@Suite struct DequantizationTests {
    static func host(_ bytes: [UInt8], _ shape: Shape, _ dtype: DType) -> HostTensor {
        let storage = HostFloatBuffer([Float](repeating: 0, count: (bytes.count + 3) / 4))
        let raw = UnsafeMutableRawBufferPointer(storage.buffer)
        raw.copyBytes(from: bytes)
        return HostTensor(bytes: UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(raw)[0..<bytes.count]), shape: shape,
                          dtype: dtype, owner: storage)
    }

    /// e4m3fn's landmarks: one, its largest finite value, its smallest subnormal, a negative, zero.
    @Test func fp8BlocksScaleTheirValues() throws {
        // 3 × 3 weights in blocks of 2 × 2: four blocks, three of them partial.
        let weight = Self.host([0x38, 0x7E, 0x01, 0xC0, 0x00, 0x38, 0x38, 0x38, 0xB8], Shape(3, 3), .float8E4M3)
        let scales = HostFloatBuffer([1, 2, 0.5, 4]).tensor(Shape(2, 2))
        let values = try Dequantization.blockFP8(weight, scales: scales, block: (2, 2), name: "w")
        #expect(values == [1, 448, 2 * Float(sign: .plus, exponent: -9, significand: 1), -2, 0, 2, 0.5, 0.5, -4])
        #expect(throws: CheckpointError.self) {
            try Dequantization.blockFP8(weight, scales: HostFloatBuffer([1]).tensor(Shape(1, 1)), block: (2, 2), name: "w")
        }
    }

    /// Two values a byte, the low nibble first, each group of 32 scaled by 2^(e − 127); the blocks
    /// run along the input dimension, so the parameter is `[inputs, outputs]`.
    @Test func mxfp4GroupsScaleTheirNibbles() throws {
        var bytes = [UInt8](repeating: 0, count: 32)
        bytes[0] = 0x72      // 1.0 (nibble 2), then 6.0 (nibble 7)
        bytes[16] = 0x9F     // −6.0 (nibble 15), then −0.5 (nibble 9)
        let blocks = Self.host(bytes, Shape(1, 2, 16), .uint8)
        let scales = Self.host([127, 129], Shape(1, 2), .uint8)
        let (values, shape) = try Dequantization.mxfp4(blocks: blocks, scales: scales, name: "experts.gate_up_proj")
        #expect(shape == Shape(64, 1))
        #expect(Array(values[0..<2]) == [1, 6])
        #expect(Array(values[32..<34]) == [-24, -2])
        #expect(values.enumerated().allSatisfy { [0, 1, 32, 33].contains($0.offset) || $0.element == 0 })
    }

    /// The fixture made by `Scripts/make-fixtures.py` with transformers: FP8 linears with their
    /// scales, which read as the float32 values transformers ran (`ModelParityTests` runs them).
    @Test func anFP8CheckpointReadsAsFloats() throws {
        let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/deepseek_v3_fp8").path
        let files = try WeightFiles(folder: folder)
        let name = "model.layers.1.self_attn.kv_b_proj.weight"
        let weight = try files.tensor(name, shape: Shape(128, 32))
        #expect(weight.dtype == .float32)
        let raw = try SafetensorsFile(path: folder + "/model.safetensors")
        #expect(raw.entries[name]?.dtype == .float8E4M3)
        #expect(raw.entries[name + "_scale_inv"] != nil)
        #expect(weight.bytes.bindMemory(to: Float.self).contains { $0 != 0 })
    }
}
