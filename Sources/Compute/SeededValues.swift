#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Counter-based random values that every backend computes alike: value `i` of a stream is a pure
/// function of `(key, i)`, so a GPU thread computes its own element with no shared state and the
/// CPU gets the same numbers. Used for dummy weights and for sampling.
public enum SeededValues {
    private static let gamma: UInt64 = 0x9e37_79b9_7f4a_7c15

    /// SplitMix64's output function.
    @inline(__always)
    public static func mix(_ value: UInt64) -> UInt64 {
        var z = value
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }

    @inline(__always)
    static func bits(_ key: UInt64, _ index: Int) -> UInt64 { mix(key &+ UInt64(index + 1) &* gamma) }

    /// Element `index` of a uniform fill in ±`bound` (the kernel `fill_uniform` computes the same).
    @inline(__always)
    public static func uniform(_ key: UInt64, _ index: Int, bound: Float) -> Float {
        let unit = Float(bits(key, index) >> 40) * (1 / 16_777_216)
        return (unit * 2 - 1) * bound
    }

    /// The key of one sampling draw: a request's seed and how many tokens it has generated, so a
    /// seeded request draws the same tokens whatever else shares its steps.
    public static func samplingKey(seed: UInt64, step: Int) -> UInt64 { mix(seed ^ (UInt64(step) &* gamma)) }

    /// The token a row of logits gives: the argmax when `temperature` is 0, else the argmax of
    /// logits / temperature plus Gumbel noise, a draw from softmax(logits / temperature). Ties
    /// go to the lower id. The kernel `sample_tokens` computes the same.
    public static func sample(_ logits: UnsafeBufferPointer<Float>, temperature: Float, key: UInt64) -> Int {
        var best = 0
        var bestValue = -Float.infinity
        for index in 0..<logits.count {
            var value = logits[index]
            if temperature > 0 {
                let unit = (Float(bits(key, index) >> 40) + 0.5) * (1 / 16_777_216)
                value = value / temperature - logf(-logf(unit))
            }
            if value > bestValue {
                bestValue = value
                best = index
            }
        }
        return best
    }
}
