import Scheduling
import Testing

/// The defaults of `--max-num-batched-tokens` and `--max-num-seqs`, as vLLM's OpenAI server picks them.
struct StepLimitsTests {
    @Test func largeGPUsButA100sGetTheLargeLimits() {
        let large = StepLimits(maxBatchedTokens: 8192, maxSequences: 1024)
        let small = StepLimits(maxBatchedTokens: 2048, maxSequences: 256)
        #expect(StepLimits.defaults(for: .gpu(name: "NVIDIA H200", memoryBytes: 150_121_709_568)) == large)
        #expect(StepLimits.defaults(for: .gpu(name: "NVIDIA H100 80GB HBM3", memoryBytes: 85_045_870_592)) == large)
        #expect(StepLimits.defaults(for: .gpu(name: "NVIDIA A100-SXM4-80GB", memoryBytes: 85_899_345_920)) == small)
        #expect(StepLimits.defaults(for: .gpu(name: "NVIDIA L4", memoryBytes: 23_034_658_816)) == small)
        #expect(StepLimits.defaults(for: .gpu(name: "NVIDIA GPU", memoryBytes: (70 << 30) - 1)) == small)
        #expect(StepLimits.defaults(for: .gpu(name: "NVIDIA GPU", memoryBytes: 70 << 30)) == large)
        #expect(StepLimits.defaults(for: .cpu) == small)
    }
}
