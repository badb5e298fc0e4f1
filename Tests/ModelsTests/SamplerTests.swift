import Engine
import Messages
import Testing

@Suite struct SamplerTests {
    let logits: [Float] = [0.5, 2.0, 1.5, -1.0, 1.9]

    func draws(_ parameters: SamplingParameters, count: Int = 400) -> [Int] {
        var sampler = Sampler(parameters)
        return logits.withUnsafeBufferPointer { buffer in (0..<count).map { _ in sampler.sample(buffer) } }
    }

    @Test func greedyAndTopKOfOneTakeTheArgmax() {
        #expect(Set(draws(.greedy, count: 5)) == [1])
        #expect(Set(draws(SamplingParameters(temperature: 1, topP: 1, topK: 1, seed: 3))) == [1])
    }

    @Test func sameSeedSameTokensDifferentSeedDifferentTokens() {
        let first = draws(SamplingParameters(temperature: 1, topP: 1, topK: nil, seed: 42))
        #expect(draws(SamplingParameters(temperature: 1, topP: 1, topK: nil, seed: 42)) == first)
        #expect(draws(SamplingParameters(temperature: 1, topP: 1, topK: nil, seed: 43)) != first)
        #expect(Set(first).count == 5, "with temperature 1 every token is drawn sometimes")
    }

    @Test func topKAndTopPRestrictTheCandidates() {
        #expect(Set(draws(SamplingParameters(temperature: 1, topP: 1, topK: 2, seed: 1))) == [1, 4])
        // Probabilities at temperature 1: 0.33, 0.30, 0.20, … so top-p 0.6 keeps tokens 1 and 4.
        #expect(Set(draws(SamplingParameters(temperature: 1, topP: 0.6, topK: nil, seed: 1))) == [1, 4])
    }

    @Test func logprobsAreTheLogSoftmaxHighestFirst() {
        let top = logits.withUnsafeBufferPointer { Sampler.topLogprobs($0, count: 2) }
        #expect(top.map(\.tokenID) == [1, 4])
        let total = logits.map { Foundation.exp(Double($0)) }.reduce(0, +)
        #expect(abs(Double(top[0].logprob) - (2.0 - Foundation.log(total))) < 1e-5)
    }

    @Test func invalidParametersAreRefused() {
        #expect(throws: SamplingParameters.ValidationError.temperature(-1)) {
            try SamplingParameters(temperature: -1, topP: 1, topK: nil, seed: nil).validated()
        }
        #expect(throws: SamplingParameters.ValidationError.topP(0)) {
            try SamplingParameters(temperature: 1, topP: 0, topK: nil, seed: nil).validated()
        }
        #expect(throws: SamplingParameters.ValidationError.topK(0)) {
            try SamplingParameters(temperature: 1, topP: 1, topK: 0, seed: nil).validated()
        }
    }
}

import Foundation
