import Checkpoint
import Compute
import ComputeCPU
import Experts
import Foundation
import Models
import Testing

/// A survivor of a lost rank reads the experts no one else holds from the checkpoint into its own
/// slots: the slot then holds exactly what loading the model with that expert there gives, for
/// every architecture's tensor names (Mixtral's `w1`/`w3`/`w2`, the Qwen family's projections,
/// transformers 5's fused experts where a fixture has them).
struct RestoreExpertsTests {
    static func bytes(_ tensor: Tensor, _ backend: CPUBackend) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: tensor.byteCount)
        try out.withUnsafeMutableBytes { try backend.downloadBytes(tensor, into: $0) }
        return out
    }

    @Test(arguments: FixturePaths.parityModels)
    func aRestoredSlotHoldsWhatLoadingPutsThere(_ name: String) throws {
        let folder = FixturePaths.model(name)
        let configuration = try ModelConfiguration(folder: folder)
        let experts = configuration.moe.expertCount
        let backend = CPUBackend()
        // Slot 0 holds the last expert here, the first in the model loaded for comparison.
        let model = try CausalLM.load(configuration, from: try WeightFiles(folder: folder), on: backend,
                                      expertSelection: [LogicalExpert(experts - 1), 1])
        let expected = try CausalLM.load(configuration, from: try WeightFiles(folder: folder), on: backend,
                                         expertSelection: [0, 1])
        let layer = try #require(model.layers.firstIndex { $0.experts != nil })
        let slots = try #require(model.layers[layer].experts), reference = try #require(expected.layers[layer].experts)
        #expect(try Self.bytes(slots.gateUp, backend) != Self.bytes(reference.gateUp, backend), "the fixture's experts differ")
        try model.restoreExperts([(layer: layer, slot: 0, expert: 0)], from: try WeightFiles(folder: folder), on: backend)
        #expect(try Self.bytes(slots.gateUp, backend) == Self.bytes(reference.gateUp, backend))
        #expect(try Self.bytes(slots.down, backend) == Self.bytes(reference.down, backend))
        #expect(throws: CheckpointError.self) {
            try model.restoreExperts([(layer: layer, slot: 2, expert: 0)], from: try WeightFiles(folder: folder), on: backend)
        }
        #expect(throws: CheckpointError.self) {
            try model.restoreExperts([(layer: layer, slot: 0, expert: LogicalExpert(experts))], from: try WeightFiles(folder: folder),
                                     on: backend)
        }
    }
}
