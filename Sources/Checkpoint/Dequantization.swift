public import Compute

/// The published quantized weight formats, dequantized to float32 as a checkpoint is read
/// (native FP8 and FP4 kernels are a later step): the values are exactly those transformers
/// computes when it dequantizes the same tensors.
public enum Dequantization {
    /// DeepSeek-V3's FP8: e4m3 weights `[rows, columns]` and float32 `weight_scale_inv`
    /// `[⌈rows / block.rows⌉, ⌈columns / block.columns⌉]`, one scale per block: w = q · scale.
    public static func blockFP8(_ weight: HostTensor, scales: HostTensor, block: (rows: Int, columns: Int), name: String) throws -> [Float] {
        let rows = weight.shape[0], columns = weight.shape.rowWidth
        let blockRows = (rows + block.rows - 1) / block.rows, blockColumns = (columns + block.columns - 1) / block.columns
        guard weight.shape.rank == 2, scales.shape == Shape(blockRows, blockColumns) else {
            throw CheckpointError.shapeMismatch(name: name + "_scale_inv", file: "block scales of \(block.rows)×\(block.columns)",
                                                expected: [blockRows, blockColumns], found: scales.shape.dimensions)
        }
        let scaleValues = try floats(scales, name: name + "_scale_inv")
        var values = [Float](repeating: 0, count: rows * columns)
        let source = weight.bytes
        for row in 0..<rows {
            for column in 0..<columns {
                let scale = scaleValues[(row / block.rows) * blockColumns + column / block.columns]
                values[row * columns + column] = e4m3[Int(source[row * columns + column])] * scale
            }
        }
        return values
    }

    /// OCP MXFP4 as GPT-OSS publishes its experts: `blocks` `[…, rows, groups, 16]` bytes of two
    /// e2m1 values each (the low nibble first), `scales` `[…, rows, groups]` e8m0 exponents biased by
    /// 127, one per group of 32 values. The blocks run along the parameter's input dimension, so the
    /// parameter is their transpose: `[…, groups · 32, rows]` float32, as transformers dequantizes it.
    public static func mxfp4(blocks: HostTensor, scales: HostTensor, name: String) throws -> (values: [Float], shape: Shape) {
        let dimensions = blocks.shape.dimensions
        guard dimensions.count >= 3, dimensions.last == 16, scales.shape.dimensions == Array(dimensions.dropLast()),
              blocks.dtype == .uint8, scales.dtype == .uint8 else {
            throw CheckpointError.shapeMismatch(name: name + "_scales", file: "MXFP4 blocks \(blocks.shape)",
                                                expected: Array(dimensions.dropLast()), found: scales.shape.dimensions)
        }
        let rows = dimensions[dimensions.count - 3], groups = dimensions[dimensions.count - 2], columns = groups * 32
        let matrices = scales.shape.elementCount / (rows * groups)
        var values = [Float](repeating: 0, count: matrices * rows * columns)
        for matrix in 0..<matrices {
            let base = matrix * rows * columns
            for row in 0..<rows {
                for group in 0..<groups {
                    let index = (matrix * rows + row) * groups + group
                    let scale = Float(sign: .plus, exponent: Int(scales.bytes[index]) - 127, significand: 1)
                    for byte in 0..<16 {
                        let packed = blocks.bytes[index * 16 + byte], column = group * 32 + 2 * byte
                        values[base + column * rows + row] = e2m1[Int(packed & 0x0F)] * scale
                        values[base + (column + 1) * rows + row] = e2m1[Int(packed >> 4)] * scale
                    }
                }
            }
        }
        return (values, Shape(Array(dimensions.dropLast(3)) + [columns, rows]))
    }

    private static func floats(_ tensor: HostTensor, name: String) throws -> [Float] {
        var values = [Float](repeating: 0, count: tensor.shape.elementCount)
        let converted = values.withUnsafeMutableBytes { tensor.convert(to: .float32, into: $0.baseAddress!) }
        guard converted else { throw CheckpointError.unsupportedDType(file: name, tensor: name, dtype: "\(tensor.dtype)") }
        return values
    }

    /// Every e4m3fn byte's value: 1 sign, 4 exponent (bias 7) and 3 mantissa bits, subnormals
    /// below, no infinities, NaN at S.1111.111.
    static let e4m3: [Float] = (0..<256).map { byte in
        let sign: Float = byte & 0x80 != 0 ? -1 : 1
        let exponent = (byte >> 3) & 0x0F, mantissa = Float(byte & 0x07)
        if exponent == 0x0F && byte & 0x07 == 0x07 { return .nan }
        if exponent == 0 { return sign * mantissa / 8 * Float(sign: .plus, exponent: -6, significand: 1) }
        return sign * (1 + mantissa / 8) * Float(sign: .plus, exponent: exponent - 7, significand: 1)
    }

    /// FP4 e2m1's sixteen values.
    static let e2m1: [Float] = [0, 0.5, 1, 1.5, 2, 3, 4, 6, -0, -0.5, -1, -1.5, -2, -3, -4, -6]
}
