public import Compute

/// `y = x·Wᵀ + b` with `W` `[outputs, inputs]` as checkpoints store it.
public struct Linear {
    public let weight: Tensor
    public let bias: Tensor?

    public init(weight: Tensor, bias: Tensor? = nil) {
        self.weight = weight
        self.bias = bias
    }

    public var outputCount: Int { weight.shape[0] }

    public func forward(_ x: Tensor, _ context: ForwardContext) throws -> Tensor {
        let out = try context.scratch(x.shape[0], outputCount)
        try forward(x, context, into: out)
        return out
    }

    public func forward(_ x: Tensor, _ context: ForwardContext, into out: Tensor) throws {
        try context.backend.matmul(x, weight: weight, bias: bias, into: out)
    }
}

/// Root-mean-square normalisation over the last `weight.elementCount` values of each row.
public struct RMSNorm {
    public let weight: Tensor
    public let epsilon: Float

    public init(weight: Tensor, epsilon: Float) {
        self.weight = weight
        self.epsilon = epsilon
    }

    public func forward(_ x: Tensor, _ context: ForwardContext) throws -> Tensor {
        let out = try context.scratch(x.shape[0], x.shape.rowWidth)
        try context.backend.rmsNorm(x, weight: weight, epsilon: epsilon, into: out)
        return out
    }

    /// The norm of `x + addend`, the sum written to `sum` (which may be `x`).
    public func forward(_ x: Tensor, adding addend: Tensor, sum: Tensor, _ context: ForwardContext) throws -> Tensor {
        let out = try context.scratch(x.shape[0], x.shape.rowWidth)
        try context.backend.addRMSNorm(x, addend, weight: weight, epsilon: epsilon, sum: sum, normed: out)
        return out
    }
}

/// The gated feed-forward `down(silu(gate(x)) · up(x))`, with gate and up stacked in one weight.
public struct GatedMLP {
    public let gateUp: Linear      // [2·intermediate, hidden], gate rows first
    public let down: Linear        // [hidden, intermediate]

    public init(gateUp: Linear, down: Linear) {
        self.gateUp = gateUp
        self.down = down
    }

    public func forward(_ x: Tensor, _ context: ForwardContext) throws -> Tensor {
        let out = try context.scratch(x.shape[0], down.outputCount)
        try forward(x, context, into: out)
        return out
    }

    public func forward(_ x: Tensor, _ context: ForwardContext, into out: Tensor) throws {
        let projected = try gateUp.forward(x, context)
        let activated = try context.scratch(x.shape[0], projected.shape[1] / 2)
        try context.backend.siluMul(projected, into: activated)
        try down.forward(activated, context, into: out)
    }
}
