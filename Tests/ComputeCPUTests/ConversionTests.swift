import Compute
import Testing

@Suite struct ConversionTests {
    @Test func floatToBFloat16RoundsToNearestEven() {
        // 1 + 2⁻⁸ is halfway between two bf16 values and rounds to the even one, 1.0;
        // 1 + 3·2⁻⁸ rounds up to 1 + 2⁻⁶.
        let values: [Float] = [1, 1 + 1.0 / 256, 1 + 3.0 / 256, -2.5]
        var out = [UInt16](repeating: 0, count: 4)
        let converted = values.withUnsafeBytes { bytes in
            out.withUnsafeMutableBytes {
                HostTensor(bytes: bytes, shape: Shape(4), dtype: .float32, owner: nil).convert(to: .bfloat16, into: $0.baseAddress!)
            }
        }
        #expect(converted)
        #expect(out == [0x3F80, 0x3F80, 0x3F82, 0xC020])
    }

    @Test func halfTypesWidenExactly() {
        let bf16: [UInt16] = [0x3F80, 0xC020]
        let f16: [UInt16] = [0x3C00, 0xC100]
        for (words, dtype) in [(bf16, DType.bfloat16), (f16, DType.float16)] {
            var out = [Float](repeating: 0, count: 2)
            let converted = words.withUnsafeBytes { bytes in
                out.withUnsafeMutableBytes {
                    HostTensor(bytes: bytes, shape: Shape(2), dtype: dtype, owner: nil).convert(to: .float32, into: $0.baseAddress!)
                }
            }
            #expect(converted && out == [1, -2.5], "\(dtype)")
        }
    }

    @Test func unsupportedPairsAreRefused() {
        let words: [UInt16] = [0]
        var out: [Int32] = [0]
        let converted = words.withUnsafeBytes { bytes in
            out.withUnsafeMutableBytes {
                HostTensor(bytes: bytes, shape: Shape(1), dtype: .float16, owner: nil).convert(to: .int32, into: $0.baseAddress!)
            }
        }
        #expect(!converted)
    }
}
