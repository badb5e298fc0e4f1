public import Compute

/// Moves named tensors from a ``WeightSource`` onto a backend, checking shapes, and stacks
/// per-expert tensors into the layouts the operators take.
public struct WeightLoader {
    public let source: any WeightSource
    public let backend: any Backend

    public init(source: any WeightSource, backend: any Backend) {
        self.source = source
        self.backend = backend
    }

    public func load(_ name: String, _ shape: Shape) throws -> Tensor {
        try backend.makeWeight(source.tensor(name, shape: shape))
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
            try backend.upload(source.tensor(part.name, shape: part.shape), into: tensor.rows(row..<(row + part.shape[0])))
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
        let dtype = backend.activationDType
        let gateUp = try backend.makeTensor(Shape(count, 2 * intermediate, hidden), dtype, in: .weights)
        let down = try backend.makeTensor(Shape(count, hidden, intermediate), dtype, in: .weights)
        let fusedGateUp = fusedPrefix + ".gate_up_proj"
        if source.contains(fusedGateUp) && !source.contains(names(0).gate) {
            try backend.upload(source.tensor(fusedGateUp, shape: Shape(count, 2 * intermediate, hidden)), into: gateUp)
            try backend.upload(source.tensor(fusedPrefix + ".down_proj", shape: Shape(count, hidden, intermediate)), into: down)
            return ExpertWeights(gateUp: gateUp, down: down)
        }
        for expert in 0..<count {
            let name = names(expert)
            let gateUpRows = gateUp.rows(expert..<(expert + 1)).reshaped(Shape(2 * intermediate, hidden))
            try backend.upload(source.tensor(name.gate, shape: Shape(intermediate, hidden)), into: gateUpRows.rows(0..<intermediate))
            try backend.upload(source.tensor(name.up, shape: Shape(intermediate, hidden)),
                               into: gateUpRows.rows(intermediate..<(2 * intermediate)))
            try backend.upload(source.tensor(name.down, shape: Shape(hidden, intermediate)),
                               into: down.rows(expert..<(expert + 1)).reshaped(Shape(hidden, intermediate)))
        }
        return ExpertWeights(gateUp: gateUp, down: down)
    }
}
