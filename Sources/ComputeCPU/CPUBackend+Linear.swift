public import Compute

extension CPUBackend {
    public func embedding(_ ids: Tensor, table: Tensor, into out: Tensor) throws {
        let width = table.shape[1]
        let vocabulary = table.shape[0]
        guard ids.dtype == .int32, out.shape[0] == ids.elementCount, out.shape.rowWidth == width else {
            throw ComputeError.shapeMismatch(operation: "embedding", detail: "ids \(ids.shape), table \(table.shape), out \(out.shape)")
        }
        let source = table.floats, target = out.floats, tokens = ids.integers
        for row in 0..<ids.elementCount {
            let id = Int(tokens[row])
            precondition(id >= 0 && id < vocabulary, "token id \(id) outside the vocabulary of \(vocabulary); callers validate ids")
            (target + row * width).update(from: source + id * width, count: width)
        }
    }

    /// Rows of `weight` are split across work items; each item runs every token against its rows,
    /// so a weight row is read once per step while it is hot in cache.
    public func matmul(_ x: Tensor, weight: Tensor, bias: Tensor?, into out: Tensor) throws {
        let tokenCount = x.shape[0], inner = x.shape.rowWidth, outputs = weight.shape[0]
        guard weight.shape.rowWidth == inner, out.shape[0] == tokenCount, out.shape.rowWidth == outputs,
              bias.map({ $0.elementCount == outputs }) ?? true else {
            throw ComputeError.shapeMismatch(operation: "matmul", detail: "x \(x.shape), weight \(weight.shape), out \(out.shape)")
        }
        let input = x.floats, weights = weight.floats, output = out.floats, biases = bias?.floats
        let (chunkCount, chunkSize) = rowChunks(outputs, minimumChunk: tokenCount > 1 ? 4 : 16)
        parallelFor(chunkCount) { chunk in
            let first = chunk * chunkSize
            let last = min(outputs, first + chunkSize)
            for token in 0..<tokenCount {
                let row = input + token * inner
                let target = output + token * outputs
                for column in first..<last {
                    let value = VectorMath.dot(row, weights + column * inner, count: inner)
                    target[column] = biases.map { value + $0[column] } ?? value
                }
            }
        }
    }

    public func gatherRows(_ x: Tensor, rows: Tensor, into out: Tensor) throws {
        let width = x.shape.rowWidth
        guard rows.dtype == .int32, out.shape[0] == rows.elementCount, out.shape.rowWidth == width else {
            throw ComputeError.shapeMismatch(operation: "gatherRows", detail: "x \(x.shape), rows \(rows.shape), out \(out.shape)")
        }
        let indices = rows.integers
        for row in 0..<rows.elementCount {
            let sourceRow = Int(indices[row])
            precondition(sourceRow >= 0 && sourceRow < x.shape[0], "row \(sourceRow) outside \(x.shape)")
            (out.floats + row * width).update(from: x.floats + sourceRow * width, count: width)
        }
    }
}
