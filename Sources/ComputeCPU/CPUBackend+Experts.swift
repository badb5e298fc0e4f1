#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
public import Compute

extension CPUBackend {
    public func routeTopK(_ logits: Tensor, bias: Tensor?, parameters: RoutingParameters, into routing: Routing) throws {
        let tokenCount = logits.shape[0], expertCount = logits.shape.rowWidth, topK = parameters.topK
        guard routing.experts.shape[0] == tokenCount, routing.topK == topK, topK <= expertCount,
              bias.map({ $0.elementCount == expertCount }) ?? true else {
            throw ComputeError.shapeMismatch(operation: "routeTopK", detail: "logits \(logits.shape), picks \(routing.experts.shape)")
        }
        if let groups = parameters.groups {
            guard groups.count > 0, expertCount % groups.count == 0, groups.selected <= groups.count,
                  groups.selected * (expertCount / groups.count) >= topK, groups.score != .topTwoSum || expertCount / groups.count >= 2 else {
                throw ComputeError.shapeMismatch(operation: "routeTopK",
                                                 detail: "\(expertCount) experts in \(groups.count) groups, \(groups.selected) chosen, top-\(topK)")
            }
        }
        let groupCount = parameters.groups?.count ?? 0
        reserveScoreBuffers(2 * expertCount + 2 * groupCount)
        let scores = scoreBuffers[0], choice = scores + expertCount, groupWork = choice + expertCount
        for token in 0..<tokenCount {
            let row = logits.floats + token * expertCount
            switch parameters.scoring {
            case .softmax:
                var maximum = -Float.infinity
                for expert in 0..<expertCount { maximum = max(maximum, row[expert]) }
                var total: Float = 0
                for expert in 0..<expertCount {
                    scores[expert] = expf(row[expert] - maximum)
                    total += scores[expert]
                }
                for expert in 0..<expertCount { scores[expert] /= total }
            case .sigmoid:
                for expert in 0..<expertCount { scores[expert] = VectorMath.sigmoid(row[expert]) }
            }
            for expert in 0..<expertCount { choice[expert] = scores[expert] + (bias?.floats[expert] ?? 0) }
            if let groups = parameters.groups {
                Self.keepBestGroups(choice, experts: expertCount, groups: groups, work: groupWork)
            }
            let experts = routing.experts.integers + token * topK, weights = routing.weights.floats + token * topK
            // Selection by repeated maximum: k is small, and ties go to the lower expert index.
            var pickedTotal: Float = 0
            for pick in 0..<topK {
                var best = 0
                for expert in 1..<expertCount where choice[expert] > choice[best] { best = expert }
                experts[pick] = Int32(best)
                weights[pick] = scores[best]
                pickedTotal += scores[best]
                choice[best] = -.infinity
            }
            if parameters.isRenormalized {
                // transformers adds 1e-20 for sigmoid scores, which changes no float sum of softmax ones.
                for pick in 0..<topK { weights[pick] /= pickedTotal + 1e-20 }
            }
            if parameters.scalingFactor != 1 {
                for pick in 0..<topK { weights[pick] *= parameters.scalingFactor }
            }
        }
    }

    /// Zeroes the choice scores of every expert outside the `groups.selected` best groups (ties to
    /// the lower group), as transformers' `masked_fill(…, 0.0)` does. `work` holds 2 · groups floats.
    private static func keepBestGroups(_ choice: UnsafeMutablePointer<Float>, experts: Int, groups: ExpertGroups,
                                       work: UnsafeMutablePointer<Float>) {
        let size = experts / groups.count
        let groupScores = work, kept = work + groups.count
        kept.update(repeating: 0, count: groups.count)
        for group in 0..<groups.count {
            let members = choice + group * size
            var first = -Float.infinity, second = -Float.infinity
            for index in 0..<size {
                if members[index] > first {
                    second = first
                    first = members[index]
                } else if members[index] > second {
                    second = members[index]
                }
            }
            groupScores[group] = groups.score == .maximum ? first : first + second
        }
        for _ in 0..<groups.selected {
            var best = -1
            for group in 0..<groups.count where kept[group] == 0 && (best < 0 || groupScores[group] > groupScores[best]) { best = group }
            kept[best] = 1
        }
        for group in 0..<groups.count where kept[group] == 0 {
            (choice + group * size).update(repeating: 0, count: size)
        }
    }

    /// Each token's picks run through their experts and are summed in pick order with their
    /// router weights. Work items are (expert, row chunk) pairs, so an expert's weight rows are
    /// read once for all the tokens that picked it.
    public func expertMLP(_ x: Tensor, experts: ExpertWeights, routing: Routing, into out: Tensor) throws {
        let tokenCount = x.shape[0], hidden = experts.hiddenSize, intermediate = experts.intermediateSize
        let topK = routing.topK, expertCount = experts.expertCount
        guard x.shape.rowWidth == hidden, out.shape[0] == tokenCount, out.shape.rowWidth == hidden,
              routing.experts.shape[0] == tokenCount else {
            throw ComputeError.shapeMismatch(operation: "expertMLP", detail: "x \(x.shape), experts \(experts.gateUp.shape), out \(out.shape)")
        }
        let assignmentCount = tokenCount * topK
        // Counting sort of assignments (token · topK + pick) by expert.
        let counts = scratch.make(Shape(expertCount + 1), .int32).integers
        counts.update(repeating: 0, count: expertCount + 1)
        let picks = routing.experts.integers
        for assignment in 0..<assignmentCount {
            let expert = Int(picks[assignment])
            precondition(expert >= 0 && expert < expertCount, "expert \(expert) outside \(expertCount)")
            counts[expert + 1] += 1
        }
        for expert in 0..<expertCount { counts[expert + 1] += counts[expert] }
        let order = scratch.make(Shape(max(assignmentCount, 1)), .int32).integers
        let cursor = scratch.make(Shape(expertCount), .int32).integers
        cursor.update(from: counts, count: expertCount)
        for assignment in 0..<assignmentCount {
            let expert = Int(picks[assignment])
            order[Int(cursor[expert])] = Int32(assignment)
            cursor[expert] += 1
        }
        let active = scratch.make(Shape(expertCount), .int32).integers
        var activeCount = 0
        for expert in 0..<expertCount where counts[expert + 1] > counts[expert] {
            active[activeCount] = Int32(expert)
            activeCount += 1
        }

        let gateUpOut = scratch.make(Shape(max(assignmentCount, 1), 2 * intermediate), .float32).floats
        let activated = scratch.make(Shape(max(assignmentCount, 1), intermediate), .float32).floats
        let expertOut = scratch.make(Shape(max(assignmentCount, 1), hidden), .float32).floats
        let input = x.floats, gateUpWeights = experts.gateUp.floats, downWeights = experts.down.floats
        let gateUpBias = experts.gateUpBias?.floats, downBias = experts.downBias?.floats

        // Gate and up projections.
        let (upChunks, upChunkSize) = Self.chunks(rows: 2 * intermediate, activeExperts: activeCount, limit: workItemLimit)
        parallelFor(activeCount * upChunks) { item in
            let expert = Int(active[item / upChunks])
            let first = (item % upChunks) * upChunkSize, last = min(2 * intermediate, first + upChunkSize)
            let weightBase = gateUpWeights + expert * 2 * intermediate * hidden
            for slot in Int(counts[expert])..<Int(counts[expert + 1]) {
                let assignment = Int(order[slot])
                let row = input + (assignment / topK) * hidden
                let target = gateUpOut + assignment * 2 * intermediate
                let bias = gateUpBias.map { $0 + expert * 2 * intermediate }
                for column in first..<last {
                    target[column] = VectorMath.dot(row, weightBase + column * hidden, count: hidden) + (bias?[column] ?? 0)
                }
            }
        }
        for assignment in 0..<assignmentCount {
            Self.activate(gateUpOut + assignment * 2 * intermediate, into: activated + assignment * intermediate, width: intermediate,
                          experts.activation)
        }
        // Down projection.
        let (downChunks, downChunkSize) = Self.chunks(rows: hidden, activeExperts: activeCount, limit: workItemLimit)
        parallelFor(activeCount * downChunks) { item in
            let expert = Int(active[item / downChunks])
            let first = (item % downChunks) * downChunkSize, last = min(hidden, first + downChunkSize)
            let weightBase = downWeights + expert * hidden * intermediate
            for slot in Int(counts[expert])..<Int(counts[expert + 1]) {
                let assignment = Int(order[slot])
                let source = activated + assignment * intermediate
                let target = expertOut + assignment * hidden
                let bias = downBias.map { $0 + expert * hidden }
                for column in first..<last {
                    target[column] = VectorMath.dot(source, weightBase + column * intermediate, count: intermediate) + (bias?[column] ?? 0)
                }
            }
        }
        Self.combine(expertOut, weights: routing.weights.floats, into: out.floats, tokens: tokenCount, topK: topK, hidden: hidden)
    }

    public func combineExperts(_ rows: Tensor, weights: Tensor, into out: Tensor) throws {
        let tokens = out.shape[0], hidden = out.shape.rowWidth, topK = weights.shape.rowWidth
        guard weights.shape[0] == tokens, rows.shape[0] == tokens * topK, rows.shape.rowWidth == hidden else {
            throw ComputeError.shapeMismatch(operation: "combineExperts", detail: "rows \(rows.shape), weights \(weights.shape), out \(out.shape)")
        }
        Self.combine(rows.floats, weights: weights.floats, into: out.floats, tokens: tokens, topK: topK, hidden: hidden)
    }

    /// Sums each token's expert rows with its router weights in pick order: one code path, so
    /// experts computed here or on another rank combine to the same bits.
    private static func combine(_ rows: UnsafeMutablePointer<Float>, weights: UnsafeMutablePointer<Float>,
                                into out: UnsafeMutablePointer<Float>, tokens: Int, topK: Int, hidden: Int) {
        for token in 0..<tokens {
            let target = out + token * hidden
            target.update(repeating: 0, count: hidden)
            for pick in 0..<topK {
                let assignment = token * topK + pick
                VectorMath.addScaled(rows + assignment * hidden, alpha: weights[assignment], into: target, count: hidden)
            }
        }
    }

    @inline(__always)
    private static func activate(_ gateUp: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, width: Int,
                                 _ activation: ExpertActivation) {
        switch activation {
        case .silu:
            siluMul(gateUp, into: out, width: width)
        case .clampedSwiGLU(let alpha, let limit):
            for index in 0..<width {
                let gate = min(gateUp[index], limit), up = min(max(gateUp[width + index], -limit), limit)
                out[index] = (up + 1) * (gate * VectorMath.sigmoid(alpha * gate))
            }
        }
    }

    private static func chunks(rows: Int, activeExperts: Int, limit: Int) -> (Int, Int) {
        let perExpert = max(1, limit / max(activeExperts, 1))
        let size = max(16, (rows + perExpert - 1) / perExpert)
        return ((rows + size - 1) / size, size)
    }
}
