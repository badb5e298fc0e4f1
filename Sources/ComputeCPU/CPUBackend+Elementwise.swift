#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
public import Compute

extension CPUBackend {
    public func rmsNorm(_ x: Tensor, weight: Tensor, epsilon: Float, into out: Tensor) throws {
        let width = weight.elementCount
        guard x.elementCount % width == 0, out.elementCount == x.elementCount else {
            throw ComputeError.shapeMismatch(operation: "rmsNorm", detail: "x \(x.shape), weight \(weight.shape), out \(out.shape)")
        }
        let rows = x.elementCount / width
        let input = x.floats, output = out.floats, gamma = weight.floats
        for row in 0..<rows {
            let source = input + row * width, target = output + row * width
            let meanSquare = VectorMath.sumOfSquares(source, count: width) / Float(width)
            let scale = 1 / sqrtf(meanSquare + epsilon)
            for index in 0..<width { target[index] = gamma[index] * (source[index] * scale) }
        }
    }

    /// Rotates pairs `(i, i + rotaryDim/2)` of each head (the "rotate half" layout of HF Llama-family models).
    public func rotary(_ x: Tensor, positions: Tensor, table: RotaryTable, headDim: Int) throws {
        let tokenCount = x.shape[0], width = x.shape.rowWidth
        guard width % headDim == 0, positions.elementCount == tokenCount, table.rotaryDim <= headDim else {
            throw ComputeError.shapeMismatch(operation: "rotary", detail: "x \(x.shape), headDim \(headDim), rotary \(table.rotaryDim)")
        }
        let half = table.rotaryDim / 2
        let heads = width / headDim
        for token in 0..<tokenCount {
            let position = Int(positions.integers[token])
            guard position < table.positionCount else {
                throw ComputeError.positionOutOfRange(position: position, limit: table.positionCount)
            }
            let cosines = table.cos.floats + position * half, sines = table.sin.floats + position * half
            for head in 0..<heads {
                let vector = x.floats + token * width + head * headDim
                for index in 0..<half {
                    let first = vector[index], second = vector[index + half]
                    vector[index] = first * cosines[index] + (-second) * sines[index]
                    vector[index + half] = second * cosines[index] + first * sines[index]
                }
            }
        }
    }

    public func clamp(_ x: Tensor, limit: Float) throws {
        let values = x.floats
        for index in 0..<x.elementCount { values[index] = min(max(values[index], -limit), limit) }
    }

    public func siluMul(_ gateUp: Tensor, into out: Tensor) throws {
        let width = out.shape.rowWidth
        guard gateUp.shape.rowWidth == 2 * width, gateUp.shape[0] == out.shape[0] else {
            throw ComputeError.shapeMismatch(operation: "siluMul", detail: "gateUp \(gateUp.shape), out \(out.shape)")
        }
        for row in 0..<out.shape[0] {
            Self.siluMul(gateUp.floats + row * 2 * width, into: out.floats + row * width, width: width)
        }
    }

    @inline(__always)
    static func siluMul(_ gateUp: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, width: Int) {
        for index in 0..<width {
            let gate = gateUp[index]
            out[index] = gate * VectorMath.sigmoid(gate) * gateUp[width + index]
        }
    }

    public func add(_ a: Tensor, _ b: Tensor, into out: Tensor) throws {
        guard a.elementCount == b.elementCount, out.elementCount == a.elementCount else {
            throw ComputeError.shapeMismatch(operation: "add", detail: "\(a.shape) + \(b.shape) into \(out.shape)")
        }
        let left = a.floats, right = b.floats, target = out.floats
        for index in 0..<a.elementCount { target[index] = left[index] + right[index] }
    }

    public func addSigmoidGated(_ y: Tensor, gate: Tensor, into out: Tensor) throws {
        let rows = y.shape[0], width = y.shape.rowWidth
        guard gate.elementCount == rows, out.elementCount == y.elementCount else {
            throw ComputeError.shapeMismatch(operation: "addSigmoidGated", detail: "y \(y.shape), gate \(gate.shape), out \(out.shape)")
        }
        for row in 0..<rows {
            let scale = VectorMath.sigmoid(gate.floats[row])
            let source = y.floats + row * width, target = out.floats + row * width
            for index in 0..<width { target[index] += scale * source[index] }
        }
    }
}
