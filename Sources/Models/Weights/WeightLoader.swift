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

    /// A layer's experts, from per-expert tensors (as published) or from transformers 5's fused
    /// `experts.gate_up_proj` `[E, 2I, H]` and `experts.down_proj` `[E, H, I]`.
    ///
    /// - Parameter names: for expert `e`, the names of its gate, up and down projections.
    public func experts(count: Int, hidden: Int, intermediate: Int, fusedPrefix: String,
                        names: (Int) -> (gate: String, up: String, down: String)) throws -> ExpertWeights {
        let selected = expertSelection?.map(\.index) ?? Array(0..<count)
        if let bad = selected.first(where: { !(0..<count).contains($0) }) {
            throw CheckpointError.badConfiguration(file: "config.json", field: "num_experts",
                                                   reason: "expert \(bad) is selected but a layer has \(count)")
        }
        let dtype = backend.activationDType
        let gateUp = try backend.makeTensor(Shape(selected.count, 2 * intermediate, hidden), dtype, in: .weights)
        let down = try backend.makeTensor(Shape(selected.count, hidden, intermediate), dtype, in: .weights)
        let fusedGateUp = fusedPrefix + ".gate_up_proj"
        if source.contains(fusedGateUp) && !source.contains(names(0).gate) {
            let allGateUp = try source.tensor(fusedGateUp, shape: Shape(count, 2 * intermediate, hidden))
            let allDown = try source.tensor(fusedPrefix + ".down_proj", shape: Shape(count, hidden, intermediate))
            for (slot, expert) in selected.enumerated() {
                try backend.upload(allGateUp.expert(expert, Shape(2 * intermediate, hidden)),
                                   into: gateUp.rows(slot..<(slot + 1)).reshaped(Shape(2 * intermediate, hidden)))
                try backend.upload(allDown.expert(expert, Shape(hidden, intermediate)),
                                   into: down.rows(slot..<(slot + 1)).reshaped(Shape(hidden, intermediate)))
            }
            return ExpertWeights(gateUp: gateUp, down: down)
        }
        for (slot, expert) in selected.enumerated() {
            let name = names(expert)
            let gateUpRows = gateUp.rows(slot..<(slot + 1)).reshaped(Shape(2 * intermediate, hidden))
            try source.write(name.gate, shape: Shape(intermediate, hidden), into: gateUpRows.rows(0..<intermediate), on: backend)
            try source.write(name.up, shape: Shape(intermediate, hidden),
                             into: gateUpRows.rows(intermediate..<(2 * intermediate)), on: backend)
            try source.write(name.down, shape: Shape(hidden, intermediate),
                             into: down.rows(slot..<(slot + 1)).reshaped(Shape(hidden, intermediate)), on: backend)
        }
        return ExpertWeights(gateUp: gateUp, down: down)
    }
}

extension HostTensor {
    /// Expert `index` of a fused `[experts, …]` tensor, as a tensor of `shape`.
    func expert(_ index: Int, _ shape: Shape) -> HostTensor {
        let size = shape.elementCount * dtype.byteCount
        return HostTensor(bytes: UnsafeRawBufferPointer(rebasing: bytes[(index * size)..<((index + 1) * size)]),
                          shape: shape, dtype: dtype, owner: owner)
    }
}
