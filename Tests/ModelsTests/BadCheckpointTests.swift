import Checkpoint
import ComputeCPU
import Engine
import Foundation
import Messages
import Models
import Testing

/// A copy of a fixture with its config.json edited, so the weights no longer fit it.
private func brokenCopy(of name: String, editing edit: (inout [String: Any]) -> Void) throws -> String {
    let source = FixturePaths.model(name)
    let folder = NSTemporaryDirectory() + "flexpert-broken-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    for file in try FileManager.default.contentsOfDirectory(atPath: source) where file != "config.json" {
        try FileManager.default.createSymbolicLink(atPath: folder + "/" + file, withDestinationPath: source + "/" + file)
    }
    var config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: source + "/config.json"))) as! [String: Any]
    edit(&config)
    try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: folder + "/config.json"))
    return folder
}

@Suite struct BadCheckpointTests {
    @Test func misShapedTensorIsNamed() throws {
        let folder = try brokenCopy(of: "qwen3_moe") { $0["moe_intermediate_size"] = 16 }
        defer { try? FileManager.default.removeItem(atPath: folder) }
        #expect(throws: CheckpointError.shapeMismatch(name: "model.layers.0.mlp.experts.0.gate_proj.weight", file: "model.safetensors",
                                                      expected: [16, 64], found: [32, 64])) {
            try CausalLM.load(folder: folder, format: .auto, on: CPUBackend())
        }
    }

    @Test func missingTensorIsNamed() throws {
        let folder = try brokenCopy(of: "olmoe") { $0["num_hidden_layers"] = 4 }
        defer { try? FileManager.default.removeItem(atPath: folder) }
        #expect(throws: CheckpointError.missingTensor(name: "model.layers.3.self_attn.q_norm.weight", searched: folder)) {
            try CausalLM.load(folder: folder, format: .auto, on: CPUBackend())
        }
    }

    @Test func unknownArchitectureIsNamed() throws {
        let folder = try brokenCopy(of: "mixtral") { $0["architectures"] = ["GPT2LMHeadModel"] }
        defer { try? FileManager.default.removeItem(atPath: folder) }
        #expect(throws: CheckpointError.unknownArchitecture(file: "config.json", name: "GPT2LMHeadModel",
                                                            supported: ModelConfiguration.supportedArchitectures)) {
            try CausalLM.load(folder: folder, format: .auto, on: CPUBackend())
        }
    }

    @Test func dummyWeightsNeedOnlyTheConfigAndAreSeeded() throws {
        let folder = NSTemporaryDirectory() + "flexpert-dummy-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try FileManager.default.copyItem(atPath: FixturePaths.model("qwen2_moe") + "/config.json", toPath: folder + "/config.json")
        func generate(seed: UInt64) throws -> [Int] {
            let backend = CPUBackend()
            let model = try CausalLM.load(folder: folder, format: .dummy, dummySeed: seed, on: backend)
            return try Generator(model: model, backend: backend)
                .generate(prompts: [[1, 2, 3, 4]], sampling: [.greedy], options: GenerationOptions(maxTokens: 6))[0].tokenIDs
        }
        let first = try generate(seed: 7)
        #expect(first.count == 6)
        #expect(try generate(seed: 7) == first)
        #expect(try generate(seed: 8) != first)
    }

    @Test func promptsAreValidated() throws {
        let backend = CPUBackend()
        let model = try CausalLM.load(folder: FixturePaths.model("qwen3_moe"), format: .auto, on: backend)
        let generator = Generator(model: model, backend: backend)
        #expect(throws: GenerationError.tokenOutOfVocabulary(id: 2000, vocabularySize: 2000)) {
            try generator.generate(prompts: [[1, 2000]], sampling: [.greedy], options: GenerationOptions(maxTokens: 1))
        }
        #expect(throws: GenerationError.emptyPrompt) {
            try generator.generate(prompts: [[]], sampling: [.greedy], options: GenerationOptions(maxTokens: 1))
        }
        #expect(throws: GenerationError.tooLong(tokens: 513, maxPositions: 512)) {
            try generator.generate(prompts: [[1]], sampling: [.greedy], options: GenerationOptions(maxTokens: 512))
        }
    }
}
