public import Checkpoint
public import Compute
import Foundation

/// Builds the cos/sin table of rotary embeddings, following transformers'
/// `modeling_rope_utils.py` for each scaling type. Angles are computed in double precision.
public enum RotaryAngles {
    /// Inverse frequencies `[rotaryDim / 2]` and the attention factor that scales cos and sin.
    public static func inverseFrequencies(_ rope: RopeParameters, rotaryDim: Int) -> (frequencies: [Double], attentionFactor: Double) {
        let half = rotaryDim / 2
        let base = (0..<half).map { 1 / pow(rope.theta, Double(2 * $0) / Double(rotaryDim)) }
        switch rope.scaling {
        case .none:
            return (base, 1)
        case .linear(let factor):
            return (base.map { $0 / factor }, 1)
        case .llama3(let factor, let low, let high, let original):
            let lowWavelength = Double(original) / low, highWavelength = Double(original) / high
            let scaled = base.map { frequency -> Double in
                let wavelength = 2 * Double.pi / frequency
                if wavelength < highWavelength { return frequency }
                if wavelength > lowWavelength { return frequency / factor }
                let smooth = (Double(original) / wavelength - low) / (high - low)
                return (1 - smooth) * frequency / factor + smooth * frequency
            }
            return (scaled, 1)
        case .yarn(let factor, let original, let betaFast, let betaSlow, let attentionFactor, let truncate):
            func correctionDim(_ rotations: Double) -> Double {
                Double(rotaryDim) * log(Double(original) / (rotations * 2 * Double.pi)) / (2 * log(rope.theta))
            }
            let low = max(truncate ? floor(correctionDim(betaFast)) : correctionDim(betaFast), 0)
            var high = min(truncate ? ceil(correctionDim(betaSlow)) : correctionDim(betaSlow), Double(rotaryDim - 1))
            if low == high { high += 0.001 }
            let frequencies = (0..<half).map { index -> Double in
                let ramp = min(max((Double(index) - low) / (high - low), 0), 1)
                let extrapolationFactor = 1 - ramp
                let extrapolated = base[index], interpolated = base[index] / factor
                return interpolated * (1 - extrapolationFactor) + extrapolated * extrapolationFactor
            }
            return (frequencies, attentionFactor ?? RopeParameters.yarnMagnitude(factor: factor, mscale: 1))
        }
    }

    public static func table(_ rope: RopeParameters, rotaryDim: Int, positionCount: Int, backend: any Backend) throws -> RotaryTable {
        let (frequencies, attentionFactor) = inverseFrequencies(rope, rotaryDim: rotaryDim)
        let half = rotaryDim / 2
        var cosines = [Float](repeating: 0, count: positionCount * half)
        var sines = cosines
        for position in 0..<positionCount {
            for index in 0..<half {
                // transformers multiplies in float32: position · frequency rounded to float first.
                let angle = Double(Float(position) * Float(frequencies[index]))
                cosines[position * half + index] = Float(cos(angle) * attentionFactor)
                sines[position * half + index] = Float(sin(angle) * attentionFactor)
            }
        }
        let cosTensor = try backend.makeTensor(Shape(positionCount, half), .float32, in: .weights)
        let sinTensor = try backend.makeTensor(Shape(positionCount, half), .float32, in: .weights)
        try backend.upload(cosines, into: cosTensor)
        try backend.upload(sines, into: sinTensor)
        return RotaryTable(cos: cosTensor, sin: sinTensor)
    }
}
