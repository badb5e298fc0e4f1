import Foundation

/// Rotary position embedding parameters: the base and any context-extension scaling.
///
/// transformers 4 configs write `rope_theta` and `rope_scaling` at the top level; transformers 5
/// writes one `rope_parameters` object with `rope_type` and `rope_theta` inside.
public struct RopeParameters: Sendable, Equatable {
    public enum Scaling: Sendable, Equatable {
        case none
        /// Positions divided by `factor`.
        case linear(factor: Double)
        /// Llama 3's frequency-dependent interpolation.
        case llama3(factor: Double, lowFrequencyFactor: Double, highFrequencyFactor: Double, originalMaxPositions: Int)
        /// YaRN: interpolation blended by frequency, plus an attention temperature (`nil`: YaRN's
        /// default for `factor`). `truncate` rounds the blend's correction range to whole dimensions
        /// (transformers' default; GPT-OSS turns it off).
        case yarn(factor: Double, originalMaxPositions: Int, betaFast: Double, betaSlow: Double, attentionFactor: Double?,
                  truncate: Bool = true)
    }

    public let theta: Double
    public let scaling: Scaling

    public init(theta: Double, scaling: Scaling) {
        self.theta = theta
        self.scaling = scaling
    }

    public init(_ fields: ConfigurationFields, defaultTheta: Double, maxPositions: Int) throws {
        let parameters = try fields.object("rope_parameters")
        let scalingFields = try parameters ?? fields.object("rope_scaling")
        theta = try parameters?.optionalDouble("rope_theta") ?? fields.double("rope_theta", default: defaultTheta)
        guard let scalingFields else {
            scaling = .none
            return
        }
        let type = try scalingFields.optionalString("rope_type", "type") ?? "default"
        switch type {
        case "default":
            scaling = .none
        case "linear":
            scaling = .linear(factor: try scalingFields.double("factor"))
        case "llama3":
            scaling = .llama3(
                factor: try scalingFields.double("factor"),
                lowFrequencyFactor: try scalingFields.double("low_freq_factor"),
                highFrequencyFactor: try scalingFields.double("high_freq_factor"),
                originalMaxPositions: try scalingFields.int("original_max_position_embeddings"))
        case "yarn":
            let factor = try scalingFields.double("factor")
            scaling = .yarn(
                factor: factor,
                originalMaxPositions: try scalingFields.optionalInt("original_max_position_embeddings")
                    ?? Int((Double(maxPositions) / factor).rounded()),
                betaFast: try scalingFields.double("beta_fast", default: 32),
                betaSlow: try scalingFields.double("beta_slow", default: 1),
                attentionFactor: try Self.yarnAttentionFactor(scalingFields, factor: factor),
                truncate: try scalingFields.bool("truncate", default: true))
        default:
            throw CheckpointError.badConfiguration(file: scalingFields.file, field: "rope_type",
                                                   reason: "unsupported rope type '\(type)' (supported: default, linear, llama3, yarn)")
        }
    }

    /// YaRN's `attention_factor`, or DeepSeek's ratio of `mscale` to `mscale_all_dim` when both are
    /// set (which is one when they are equal: DeepSeek scales the softmax instead), as transformers
    /// computes it.
    private static func yarnAttentionFactor(_ fields: ConfigurationFields, factor: Double) throws -> Double? {
        if let given = try fields.optionalDouble("attention_factor") { return given }
        guard let mscale = try fields.optionalDouble("mscale"), let allDimensions = try fields.optionalDouble("mscale_all_dim"),
              mscale != 0, allDimensions != 0 else { return nil }
        return yarnMagnitude(factor: factor, mscale: mscale) / yarnMagnitude(factor: factor, mscale: allDimensions)
    }

    /// YaRN's `0.1 · mscale · ln(factor) + 1` (one for a factor of at most one).
    public static func yarnMagnitude(factor: Double, mscale: Double) -> Double {
        factor <= 1 ? 1 : 0.1 * mscale * log(factor) + 1
    }
}
