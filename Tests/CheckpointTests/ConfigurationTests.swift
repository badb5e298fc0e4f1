import Checkpoint
import Compute
import Foundation
import Testing

private func configuration(_ json: String) throws -> ModelConfiguration {
    try ModelConfiguration(ConfigurationFields(file: "config.json", data: Data(json.utf8)))
}

private let qwen3Base = """
"architectures": ["Qwen3MoeForCausalLM"], "vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 4,
"num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "max_position_embeddings": 64,
"moe_intermediate_size": 8, "intermediate_size": 24, "num_experts_per_tok": 2
"""

@Suite struct ConfigurationTests {
    @Test func transformers4StyleQwen3() throws {
        let config = try configuration("""
        {\(qwen3Base), "num_experts": 8, "rope_theta": 1000000.0, "rope_scaling": null, "norm_topk_prob": true,
         "decoder_sparse_step": 2, "mlp_only_layers": [3], "rms_norm_eps": 1e-5}
        """)
        guard case .qwen3MoE(let decoder, let moe) = config else { Issue.record("wrong case \(config)"); return }
        #expect(decoder.rope == RopeParameters(theta: 1_000_000, scaling: .none))
        #expect(decoder.headDim == 16 && decoder.kvHeadCount == 2 && decoder.rmsNormEpsilon == 1e-5)
        #expect(moe.expertCount == 8 && moe.topK == 2 && moe.normalizesTopKProbabilities)
        #expect((0..<4).map(moe.isSparse) == [false, true, false, false])
    }

    @Test func transformers5StyleQwen3() throws {
        let config = try configuration("""
        {\(qwen3Base), "num_local_experts": 8,
         "rope_parameters": {"rope_type": "yarn", "rope_theta": 5000.0, "factor": 4.0, "original_max_position_embeddings": 16}}
        """)
        #expect(config.moe.expertCount == 8)
        #expect(config.decoder.rope == RopeParameters(
            theta: 5000, scaling: .yarn(factor: 4, originalMaxPositions: 16, betaFast: 32, betaSlow: 1, attentionFactor: nil)))
    }

    @Test func ropeScalingVariants() throws {
        let linear = try configuration("{\(qwen3Base), \"num_experts\": 8, \"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}}")
        #expect(linear.decoder.rope.scaling == .linear(factor: 2))
        let llama3 = try configuration("""
        {\(qwen3Base), "num_experts": 8, "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
         "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}
        """)
        #expect(llama3.decoder.rope.scaling == .llama3(factor: 8, lowFrequencyFactor: 1, highFrequencyFactor: 4, originalMaxPositions: 8192))
        #expect(throws: CheckpointError.badConfiguration(file: "config.json rope_scaling", field: "rope_type",
                                                          reason: "unsupported rope type 'dynamic' (supported: default, linear, llama3, yarn)")) {
            try configuration("{\(qwen3Base), \"num_experts\": 8, \"rope_scaling\": {\"type\": \"dynamic\", \"factor\": 2.0}}")
        }
    }

    @Test func mixtralOLMoEAndQwen2Quirks() throws {
        let mixtral = try configuration("""
        {"architectures": ["MixtralForCausalLM"], "vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 4, "max_position_embeddings": 64, "intermediate_size": 16,
         "num_local_experts": 4, "num_experts_per_tok": 2, "sliding_window": 32}
        """)
        guard case .mixtral(let decoder, let moe, let window) = mixtral else { Issue.record("wrong case"); return }
        #expect(decoder.headDim == 8 && decoder.rope.theta == 1_000_000 && window == 32 && moe.normalizesTopKProbabilities)
        let olmoe = try configuration("""
        {"model_type": "olmoe", "vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
         "max_position_embeddings": 64, "intermediate_size": 16, "num_experts": 4, "num_experts_per_tok": 2, "clip_qkv": 8}
        """)
        guard case .olmoE(_, let olmoeMoE, let clip) = olmoe else { Issue.record("wrong case"); return }
        #expect(clip == 8 && !olmoeMoE.normalizesTopKProbabilities)
        let qwen2 = try configuration("""
        {"architectures": ["Qwen2MoeForCausalLM"], "vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 2,
         "num_attention_heads": 4, "max_position_embeddings": 64, "intermediate_size": 16, "moe_intermediate_size": 8,
         "shared_expert_intermediate_size": 24, "num_experts": 4, "num_experts_per_tok": 2}
        """)
        #expect(qwen2.moe.sharedExpertIntermediateSize == 24 && !qwen2.moe.normalizesTopKProbabilities)
        #expect(qwen2.decoder.hasAttentionBias)
    }

    @Test func badConfigurationsNameTheField() {
        #expect(throws: CheckpointError.unknownArchitecture(file: "config.json", name: "LlamaForCausalLM",
                                                            supported: ModelConfiguration.supportedArchitectures)) {
            try configuration("{\"architectures\": [\"LlamaForCausalLM\"]}")
        }
        #expect(throws: CheckpointError.badConfiguration(file: "config.json", field: "num_experts", reason: "missing")) {
            try configuration("{\(qwen3Base)}")
        }
        #expect(throws: CheckpointError.badConfiguration(file: "config.json", field: "hidden_size", reason: "expected an integer, found 32.5")) {
            try configuration("{\"architectures\": [\"Qwen3MoeForCausalLM\"], \"vocab_size\": 100, \"hidden_size\": 32.5}")
        }
        #expect(throws: CheckpointError.badConfiguration(file: "config.json", field: "num_experts_per_tok", reason: "9 exceeds the 8 experts")) {
            try configuration("{\(qwen3Base.replacingOccurrences(of: "\"num_experts_per_tok\": 2", with: "\"num_experts_per_tok\": 9")), \"num_experts\": 8}")
        }
    }
}

@Suite struct DeepSeekConfigurationTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// DeepSeek-V2-Lite: greedy softmax routing, no query LoRA, and YaRN's `mscale_all_dim` on the softmax scale.
    @Test func deepSeekV2LiteReadsAsPublished() throws {
        let configuration = try ModelConfiguration(folder: Self.root.appendingPathComponent("Benchmarks/deepseek-v2-lite").path)
        guard case .deepseekV2(let decoder, let moe, let attention) = configuration else {
            Issue.record("\(configuration)")
            return
        }
        #expect(decoder.layerCount == 27 && moe.expertCount == 64 && moe.topK == 6)
        #expect(moe.groups == nil && moe.scoring == .softmax && !moe.hasCorrectionBias)
        #expect(moe.sharedExpertIntermediateSize == 2 * 1408 && !moe.sharedExpertIsGated)
        #expect(!moe.isSparse(layerIndex: 0) && moe.isSparse(layerIndex: 1) && moe.isSparse(layerIndex: 26))
        #expect(attention.queryRank == nil && attention.latentWidth == 512 && attention.ropeIsInterleaved)
        let magnitude = 0.1 * 0.707 * log(40.0) + 1
        #expect(abs(attention.scale - magnitude * magnitude / 192.0.squareRoot()) < 1e-12)
        #expect(configuration.cacheRow.width == 576 && !configuration.cacheRow.holdsValues)
        // mscale equal to mscale_all_dim: the rotary table is not scaled.
        guard case .yarn(_, _, _, _, let attentionFactor, _) = decoder.rope.scaling else {
            Issue.record("\(decoder.rope)")
            return
        }
        #expect(attentionFactor == 1)
    }

    @Test func deepSeekV3RoutesBySigmoidInGroups() throws {
        let configuration = try ModelConfiguration(folder: Self.root.appendingPathComponent("Benchmarks/deepseek-v3").path)
        guard case .deepseekV3(_, let moe, let attention) = configuration else {
            Issue.record("\(configuration)")
            return
        }
        #expect(moe.routing == RoutingParameters(topK: 8, isRenormalized: true, scoring: .sigmoid,
                                                 groups: ExpertGroups(count: 8, selected: 4, score: .topTwoSum), scalingFactor: 2.5))
        #expect(moe.hasCorrectionBias && attention.queryRank == 1536)
    }

    @Test func badDeepSeekRoutingIsRefused() throws {
        var fields = try JSONSerialization.jsonObject(
            with: Data(contentsOf: Self.root.appendingPathComponent("Benchmarks/deepseek-v3/config.json"))) as! [String: Any]
        fields["n_group"] = 3
        let data = try JSONSerialization.data(withJSONObject: fields)
        #expect(throws: CheckpointError.self) { try ModelConfiguration(ConfigurationFields(file: "config.json", data: data)) }
    }
}
