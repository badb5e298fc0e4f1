import Checkpoint
import Compute
import ComputeCPU
import Engine
import Foundation
import Messages
import Models
import Testing

/// Greedy tokens and logits of the committed fixtures against those transformers recorded
/// (`Scripts/make-fixtures.py`; each folder's manifest.json says how).
@Suite struct ModelParityTests {
    struct Prompt: Decodable {
        let ids: [Int]
    }

    struct Reference {
        let prompts: [[Int]]
        let tokens: [[Int]]
        let logits: [[[Float]]]      // [prompt][step][vocabulary]
    }

    static func reference(_ folder: String) throws -> Reference {
        let prompts = try JSONDecoder().decode([Prompt].self, from: Data(contentsOf: URL(fileURLWithPath: folder + "/prompts.json")))
        let expected = try SafetensorsFile(path: folder + "/expected.safetensors")
        var tokens: [[Int]] = [], logits: [[[Float]]] = []
        for index in prompts.indices {
            let tokenTensor = try #require(expected.tensor(named: "tokens_\(index)"))
            tokens.append(tokenTensor.bytes.bindMemory(to: Int32.self).map(Int.init))
            let logitTensor = try #require(expected.tensor(named: "logits_\(index)"))
            let values = Array(logitTensor.bytes.bindMemory(to: Float.self))
            let width = logitTensor.shape[1]
            logits.append((0..<logitTensor.shape[0]).map { Array(values[($0 * width)..<(($0 + 1) * width)]) })
        }
        return Reference(prompts: prompts.map(\.ids), tokens: tokens, logits: logits)
    }

    /// max |ours − reference| / max |reference| over one step's logits.
    static func relativeError(_ ours: [Float], _ reference: [Float]) -> Float {
        var difference: Float = 0, scale: Float = 0
        for (a, b) in zip(ours, reference) {
            difference = max(difference, abs(a - b))
            scale = max(scale, abs(b))
        }
        return difference / scale
    }

    @Test(arguments: FixturePaths.parityModels)
    func greedyTokensAndLogitsMatchTransformers(model name: String) throws {
        let folder = FixturePaths.model(name)
        let reference = try Self.reference(folder)
        let backend = CPUBackend()
        let model = try CausalLM.load(folder: folder, format: .auto, on: backend)
        let generator = Generator(model: model, backend: backend)
        let steps = reference.tokens[0].count
        for (index, prompt) in reference.prompts.enumerated() {
            let output = try generator.generate(prompts: [prompt], sampling: [.greedy],
                                                options: GenerationOptions(maxTokens: steps, keepsLogits: true))[0]
            #expect(output.tokenIDs == reference.tokens[index], "\(name) prompt \(index)")
            for step in 0..<steps {
                let error = Self.relativeError(output.logits[step], reference.logits[index][step])
                #expect(error < 1e-4, "\(name) prompt \(index) step \(step): relative error \(error)")
            }
        }
    }

    /// A request's tokens and logits do not depend on the other requests in its batch.
    @Test(arguments: ["qwen3_moe", "mixtral", "qwen2_moe"])
    func batchedEqualsAlone(model name: String) throws {
        let folder = FixturePaths.model(name)
        let reference = try Self.reference(folder)
        let backend = CPUBackend()
        let model = try CausalLM.load(folder: folder, format: .auto, on: backend)
        let generator = Generator(model: model, backend: backend)
        let options = GenerationOptions(maxTokens: 6, keepsLogits: true)
        let batched = try generator.generate(prompts: reference.prompts, sampling: reference.prompts.map { _ in .greedy }, options: options)
        for (index, prompt) in reference.prompts.enumerated() {
            let alone = try generator.generate(prompts: [prompt], sampling: [.greedy], options: options)[0]
            #expect(batched[index].tokenIDs == alone.tokenIDs)
            #expect(batched[index].logits == alone.logits, "logits must be bitwise equal")
        }
    }
}
