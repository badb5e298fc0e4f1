import Checkpoint
public import Compute
public import Experts

/// Moves named tensors from a ``WeightSource`` onto a backend, checking shapes, and stacks
/// per-expert tensors into the layouts the operators take.
public struct WeightLoader {
    public let source: any WeightSource
    public let backend: any Backend
    /// The logical experts this rank holds, slot by slot, in every MoE layer; `nil` holds all.
    public let expertSelection: [LogicalExpert]?

    public init(source: any WeightSource, backend: any Backend, expertSelection: [LogicalExpert]? = nil) {
        self.source = source
        self.backend = backend
        self.expertSelection = expertSelection
    }

    public func load(_ name: String, _ shape: Shape) throws -> Tensor {
        try source.weight(name, shape: shape, on: backend)
    }

    public func loadIfPresent(_ name: String, _ shape: Shape) throws -> Tensor? {
        source.contains(name) ? try load(name, shape) : nil
    }

    /// The tensor `name` on the host as float32 values, for weights derived at load time.
    public func hostFloats(_ name: String, _ shape: Shape) throws -> [Float] {
        let host = try source.tensor(name, shape: shape)
        var values = [Float](repeating: 0, count: shape.elementCount)
        let converted = values.withUnsafeMutableBytes { host.convert(to: .float32, into: $0.baseAddress!) }
        guard converted else {
            throw CheckpointError.unsupportedDType(file: name, tensor: name, dtype: "\(host.dtype)")
        }
        return values
    }

    /// A weight made from host values.
    public func makeWeight(_ values: [Float], _ shape: Shape) throws -> Tensor {
        try backend.makeWeight(HostFloatBuffer(values).tensor(shape))
    }

    /// The tensor `name` with its rows reordered: loaded row i is the checkpoint's row `order[i]`
    /// (`nil`: as stored).
    public func loadRows(_ name: String, _ shape: Shape, order: [Int]?) throws -> Tensor {
        guard let order else { return try load(name, shape) }
        let values = try hostFloats(name, shape), width = shape.rowWidth
        var reordered = [Float](repeating: 0, count: values.count)
        for (row, source) in order.enumerated() {
            reordered[(row * width)..<((row + 1) * width)] = values[(source * width)..<((source + 1) * width)]
        }
        return try makeWeight(reordered, shape)
    }

    /// Rows of several tensors, one after another, in one `[Σ rows, columns]` weight.
    public func concatenatingRows(_ parts: [(name: String, shape: Shape)]) throws -> Tensor {
        let columns = parts[0].shape.rowWidth
        let rows = parts.reduce(0) { $0 + $1.shape[0] }
        let tensor = try backend.makeTensor(Shape(rows, columns), backend.activationDType, in: .weights)
        var row = 0
        for part in parts {
            try source.write(part.name, shape: part.shape, into: tensor.rows(row..<(row + part.shape[0])), on: backend)
            row += part.shape[0]
        }
        return tensor
    }

    /// A layer's experts, `count` in the checkpoint, into this rank's slots (``expertSelection``).
    public func experts(count: Int, hidden: Int, intermediate: Int, names: ExpertTensorNames) throws -> ExpertWeights {
        let selected = expertSelection?.map(\.index) ?? Array(0..<count)
        if let bad = selected.first(where: { !(0..<count).contains($0) }) {
            throw CheckpointError.badConfiguration(file: "config.json", field: "num_experts",
                                                   reason: "expert \(bad) is selected but a layer has \(count)")
        }
        let dtype = backend.activationDType, slots = selected.count
        let gptOss = names.layout == .gptOss
        let weights = ExpertWeights(
            gateUp: try backend.makeTensor(Shape(slots, 2 * intermediate, hidden), dtype, in: .weights),
            down: try backend.makeTensor(Shape(slots, hidden, intermediate), dtype, in: .weights),
            gateUpBias: gptOss ? try backend.makeTensor(Shape(slots, 2 * intermediate), dtype, in: .weights) : nil,
            downBias: gptOss ? try backend.makeTensor(Shape(slots, hidden), dtype, in: .weights) : nil,
            activation: gptOss ? ExpertTensorNames.gptOssActivation : .silu)
        try fill(weights, slots: selected.enumerated().map { ($0.offset, $0.element) }, count: count, names: names)
        return weights
    }

    /// Writes expert `expert` of the checkpoint into row `slot` of `weights`, for each pair: from
    /// per-expert tensors (as published) or from transformers 5's fused `experts.gate_up_proj`
    /// `[E, 2I, H]` and `experts.down_proj` `[E, H, I]`, or GPT-OSS's (``ExpertTensorNames/Layout``).
    /// A rank that lost a peer restores the experts only that peer held this way.
    public func fill(_ weights: ExpertWeights, slots: [(slot: Int, expert: Int)], count: Int, names: ExpertTensorNames) throws {
        let hidden = weights.down.shape[1], intermediate = weights.intermediateSize
        if let bad = slots.first(where: { !(0..<count).contains($0.expert) || !(0..<weights.expertCount).contains($0.slot) }) {
            throw CheckpointError.badConfiguration(file: "config.json", field: "num_experts",
                                                   reason: "expert \(bad.expert) into slot \(bad.slot) of \(weights.expertCount), of \(count) experts")
        }
        if names.layout == .gptOss { return try fillGptOss(weights, slots: slots, count: count, names: names) }
        let gateUp = weights.gateUp, down = weights.down
        if source.contains(names.fusedGateUp) && !source.contains(names.expert(0).gate) {
            let allGateUp = try source.tensor(names.fusedGateUp, shape: Shape(count, 2 * intermediate, hidden))
            let allDown = try source.tensor(names.fusedDown, shape: Shape(count, hidden, intermediate))
            for (slot, expert) in slots {
                try backend.upload(allGateUp.expert(expert, Shape(2 * intermediate, hidden)),
                                   into: gateUp.rows(slot..<(slot + 1)).reshaped(Shape(2 * intermediate, hidden)))
                try backend.upload(allDown.expert(expert, Shape(hidden, intermediate)),
                                   into: down.rows(slot..<(slot + 1)).reshaped(Shape(hidden, intermediate)))
            }
            return
        }
        for (slot, expert) in slots {
            let name = names.expert(expert)
            let gateUpRows = gateUp.rows(slot..<(slot + 1)).reshaped(Shape(2 * intermediate, hidden))
            try source.write(name.gate, shape: Shape(intermediate, hidden), into: gateUpRows.rows(0..<intermediate), on: backend)
            try source.write(name.up, shape: Shape(intermediate, hidden),
                             into: gateUpRows.rows(intermediate..<(2 * intermediate)), on: backend)
            try source.write(name.down, shape: Shape(hidden, intermediate),
                             into: down.rows(slot..<(slot + 1)).reshaped(Shape(hidden, intermediate)), on: backend)
        }
    }
}

extension WeightLoader {
    /// GPT-OSS's `gate_up_proj` `[E, H, 2I]` (gate and up columns interleaved, `x · W`) and
    /// `down_proj` `[E, I, H]`, with their biases, transposed and de-interleaved into the slots'
    /// `[2I, H]` (gate rows, then up rows) and `[H, I]`.
    func fillGptOss(_ weights: ExpertWeights, slots: [(slot: Int, expert: Int)], count: Int, names: ExpertTensorNames) throws {
        let hidden = weights.hiddenSize, intermediate = weights.intermediateSize
        guard let gateUpBias = weights.gateUpBias, let downBias = weights.downBias else {
            preconditionFailure("GPT-OSS's experts are made with their biases")
        }
        if source.isSeeded {
            // Seeded values have no layout to undo: each slot is filled on the device, named by its expert.
            for (slot, expert) in slots {
                let name = "\(names.prefix).\(expert)"
                try source.write(name + ".gate_up_proj", shape: Shape(2 * intermediate, hidden),
                                 into: weights.gateUp.rows(slot..<(slot + 1)).reshaped(Shape(2 * intermediate, hidden)), on: backend)
                try source.write(name + ".gate_up_proj_bias", shape: Shape(1, 2 * intermediate), into: gateUpBias.rows(slot..<(slot + 1)),
                                 on: backend)
                try source.write(name + ".down_proj", shape: Shape(hidden, intermediate),
                                 into: weights.down.rows(slot..<(slot + 1)).reshaped(Shape(hidden, intermediate)), on: backend)
                try source.write(name + ".down_proj_bias", shape: Shape(1, hidden), into: downBias.rows(slot..<(slot + 1)), on: backend)
            }
            return
        }
        let gateUp = try hostFloats(names.fusedGateUp, Shape(count, hidden, 2 * intermediate))
        let gateUpBiases = try hostFloats(names.fusedGateUp + "_bias", Shape(count, 2 * intermediate))
        let down = try hostFloats(names.fusedDown, Shape(count, intermediate, hidden))
        let downBiases = try hostFloats(names.fusedDown + "_bias", Shape(count, hidden))
        for (slot, expert) in slots {
            var rows = [Float](repeating: 0, count: 2 * intermediate * hidden), bias = [Float](repeating: 0, count: 2 * intermediate)
            for column in 0..<(2 * intermediate) {
                // Column 2j is gate j, column 2j + 1 up j.
                let row = column % 2 == 0 ? column / 2 : intermediate + column / 2
                bias[row] = gateUpBiases[expert * 2 * intermediate + column]
                for input in 0..<hidden { rows[row * hidden + input] = gateUp[(expert * hidden + input) * 2 * intermediate + column] }
            }
            var downRows = [Float](repeating: 0, count: hidden * intermediate)
            for output in 0..<hidden {
                for input in 0..<intermediate { downRows[output * intermediate + input] = down[(expert * intermediate + input) * hidden + output] }
            }
            try backend.upload(HostFloatBuffer(rows).tensor(Shape(2 * intermediate, hidden)),
                               into: weights.gateUp.rows(slot..<(slot + 1)).reshaped(Shape(2 * intermediate, hidden)))
            try backend.upload(HostFloatBuffer(bias).tensor(Shape(1, 2 * intermediate)), into: gateUpBias.rows(slot..<(slot + 1)))
            try backend.upload(HostFloatBuffer(downRows).tensor(Shape(hidden, intermediate)),
                               into: weights.down.rows(slot..<(slot + 1)).reshaped(Shape(hidden, intermediate)))
            try backend.upload(HostFloatBuffer(Array(downBiases[(expert * hidden)..<((expert + 1) * hidden)])).tensor(Shape(1, hidden)),
                               into: downBias.rows(slot..<(slot + 1)))
        }
    }
}

/// Where a MoE layer's experts are in a checkpoint: per-expert tensors
/// `PREFIX.E.GATE.weight`, `PREFIX.E.UP.weight`, `PREFIX.E.DOWN.weight`, or transformers 5's
/// fused `PREFIX.gate_up_proj` and `PREFIX.down_proj`.
public struct ExpertTensorNames: Sendable, Equatable {
    public enum Layout: Sendable, Equatable {
        /// Per-expert tensors, or transformers 5's fused `[E, 2I, H]` and `[E, H, I]`.
        case standard
        /// GPT-OSS's fused `gate_up_proj` `[E, H, 2I]` (interleaved), `down_proj` `[E, I, H]` and
        /// their `_bias` tensors.
        case gptOss
    }

    /// GPT-OSS's experts' activation: α 1.702, limit 7.
    public static let gptOssActivation = ExpertActivation.clampedSwiGLU(alpha: 1.702, limit: 7)

    /// The experts' module, e.g. `model.layers.3.mlp.experts`.
    public let prefix: String
    public let layout: Layout
    /// The projections' names (`gate_proj`, `up_proj`, `down_proj`; Mixtral's `w1`, `w3`, `w2`).
    public let gate: String
    public let up: String
    public let down: String

    public init(prefix: String, gate: String = "gate_proj", up: String = "up_proj", down: String = "down_proj",
                layout: Layout = .standard) {
        self.prefix = prefix
        self.layout = layout
        self.gate = gate
        self.up = up
        self.down = down
    }

    func expert(_ index: Int) -> (gate: String, up: String, down: String) {
        ("\(prefix).\(index).\(gate).weight", "\(prefix).\(index).\(up).weight", "\(prefix).\(index).\(down).weight")
    }

    var fusedGateUp: String { prefix + ".gate_up_proj" }
    var fusedDown: String { prefix + ".down_proj" }
}

extension HostTensor {
    /// Expert `index` of a fused `[experts, …]` tensor, as a tensor of `shape`.
    func expert(_ index: Int, _ shape: Shape) -> HostTensor {
        let size = shape.elementCount * dtype.byteCount
        return HostTensor(bytes: UnsafeRawBufferPointer(rebasing: bytes[(index * size)..<((index + 1) * size)]),
                          shape: shape, dtype: dtype, owner: owner)
    }
}
