import Compute
public import Messages
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Models

/// Picks tokens from logits on the host: greedy, or temperature → top-k → top-p → draw, the order
/// of transformers' logits processors. One sampler per request, owning its random generator.
/// The engine uses it for requests with top-k or top-p; greedy requests and draws by temperature
/// alone go through `SeededValues.sample`, which a backend can run where the logits are.
public struct Sampler {
    public let parameters: SamplingParameters
    private var generator: SplitMix64
    private var order: [Int32] = []
    private var probabilities: [Float] = []

    public init(_ parameters: SamplingParameters) {
        self.parameters = parameters
        generator = SplitMix64(seed: parameters.seed ?? UInt64.random(in: .min ... .max))
    }

    /// The next token given the logits `[vocabulary]` of the request's last position.
    public mutating func sample(_ logits: UnsafeBufferPointer<Float>) -> Int {
        if parameters.isGreedy { return Self.argmax(logits) }
        let count = logits.count
        if probabilities.count != count {
            probabilities = [Float](repeating: 0, count: count)
            order = [Int32](repeating: 0, count: count)
        }
        let inverseTemperature = 1 / parameters.temperature
        var maximum = -Float.infinity
        for index in 0..<count { maximum = max(maximum, logits[index]) }
        var total: Float = 0
        for index in 0..<count {
            let weight = expf((logits[index] - maximum) * inverseTemperature)
            probabilities[index] = weight
            total += weight
        }
        if parameters.topK == nil && parameters.topP >= 1 {
            // No truncation: draw straight from the unsorted distribution.
            var draw = generator.nextUnitFloat() * total
            for index in 0..<count {
                draw -= probabilities[index]
                if draw < 0 { return index }
            }
            return count - 1
        }
        for index in 0..<count { order[index] = Int32(index) }
        probabilities.withUnsafeBufferPointer { weights in
            order.sort { weights[Int($0)] > weights[Int($1)] || (weights[Int($0)] == weights[Int($1)] && $0 < $1) }
        }
        var kept = min(parameters.topK ?? count, count)
        if parameters.topP < 1 {
            var cumulative: Float = 0
            var index = 0
            while index < kept {
                cumulative += probabilities[Int(order[index])] / total
                index += 1
                if cumulative >= parameters.topP { break }
            }
            kept = max(1, index)
        }
        var keptTotal: Float = 0
        for index in 0..<kept { keptTotal += probabilities[Int(order[index])] }
        var draw = generator.nextUnitFloat() * keptTotal
        for index in 0..<kept {
            draw -= probabilities[Int(order[index])]
            if draw < 0 { return Int(order[index]) }
        }
        return Int(order[kept - 1])
    }

    /// Ties go to the lowest id, as `torch.argmax` does.
    public static func argmax(_ logits: UnsafeBufferPointer<Float>) -> Int {
        var best = 0
        for index in 1..<logits.count where logits[index] > logits[best] { best = index }
        return best
    }

    /// The `count` highest log-probabilities of the log-softmax of `logits`, highest first.
    public static func topLogprobs(_ logits: UnsafeBufferPointer<Float>, count: Int) -> [(tokenID: Int, logprob: Float)] {
        guard count > 0 else { return [] }
        var maximum = -Float.infinity
        for value in logits { maximum = max(maximum, value) }
        var total: Double = 0
        for value in logits { total += Double(expf(value - maximum)) }
        let logTotal = Float(log(total)) + maximum
        var best: [(tokenID: Int, logprob: Float)] = []
        for (index, value) in logits.enumerated() {
            if best.count < count || value > best[best.count - 1].logprob + logTotal {
                best.append((index, value - logTotal))
                best.sort { $0.logprob > $1.logprob || ($0.logprob == $1.logprob && $0.tokenID < $1.tokenID) }
                if best.count > count { best.removeLast() }
            }
        }
        return best
    }
}

extension Sampler {
    /// The log-probability of `tokenID` under the log-softmax of `logits`, with the `top` most likely tokens.
    public static func logprobs(_ logits: UnsafeBufferPointer<Float>, tokenID: Int, top: Int) -> TokenLogprobs {
        var maximum = -Float.infinity
        for value in logits { maximum = max(maximum, value) }
        var total: Double = 0
        for value in logits { total += Double(expf(value - maximum)) }
        let logTotal = Float(log(total)) + maximum
        let best = topLogprobs(logits, count: top).map { TopLogprob(tokenID: $0.tokenID, logprob: $0.logprob) }
        return TokenLogprobs(tokenID: tokenID, logprob: logits[tokenID] - logTotal, top: best)
    }
}
