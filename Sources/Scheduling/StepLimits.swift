/// The two limits of a step a user rarely sets: `--max-num-batched-tokens` and `--max-num-seqs`.
/// Their defaults follow vLLM's OpenAI server (`EngineArgs._set_default_args`): a GPU of 70 GiB or
/// more that is not an A100 (H100, H200, MI300X, B200) runs 8,192 tokens and 1,024 sequences a
/// step, where its bandwidth and memory pay for the larger batches; smaller GPUs and A100s, and the
/// CPU, 2,048 and 256.
public struct StepLimits: Sendable, Equatable {
    public var maxBatchedTokens: Int
    public var maxSequences: Int

    public init(maxBatchedTokens: Int, maxSequences: Int) {
        self.maxBatchedTokens = maxBatchedTokens
        self.maxSequences = maxSequences
    }

    /// What a rank's engine is given when the flags are left out.
    public enum Device: Sendable, Equatable {
        case cpu
        /// The driver's name for the GPU and its whole memory.
        case gpu(name: String, memoryBytes: Int)
    }

    public static func defaults(for device: Device) -> StepLimits {
        switch device {
        case .gpu(let name, let memoryBytes) where memoryBytes >= 70 << 30 && !name.lowercased().contains("a100"):
            StepLimits(maxBatchedTokens: 8192, maxSequences: 1024)
        case .cpu, .gpu:
            StepLimits(maxBatchedTokens: 2048, maxSequences: 256)
        }
    }
}
