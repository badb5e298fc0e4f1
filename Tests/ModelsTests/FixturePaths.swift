import Foundation

enum FixturePaths {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures").path

    static func model(_ name: String) -> String { root + "/" + name }

    static let parityModels = ["qwen3_moe", "qwen3_moe_bf16_sharded", "mixtral", "mixtral_f16", "qwen2_moe", "olmoe", "deepseek_v2", "deepseek_v3", "deepseek_v3_fp8", "gpt_oss", "gpt_oss_mxfp4"]
}
