import Compute
import ComputeCPU
import Foundation

/// The operator cases `flexpert check-cuda` runs on a GPU and the emulator tests run on the CPU:
/// each runs one operator on both backends of an ``OperatorParity`` and records the difference.
/// ``Sizes`` picks the shapes: the model's real ones on a GPU, small ones on the emulator.
public struct OperatorChecks {
    public struct Sizes: Sendable {
        public let rows: Int
        public let width: Int
        public let matmuls: [(tokens: Int, inner: Int, outputs: Int, biased: Bool)]
        /// Three projections of the same rows (query, key, value; the third biased).
        public let projections: [(tokens: Int, inner: Int, outputs: (Int, Int, Int))]
        public let attention: [(heads: Int, kvHeads: Int, headDim: Int, window: Int)]
        public let routing: [(tokens: Int, experts: Int, topK: Int)]
        /// Latent attention (DeepSeek): heads, no-rope and rotary query widths, latent, value width.
        public let latent: [(heads: Int, nope: Int, rope: Int, latent: Int, value: Int)]
        public let experts: [(tokens: Int, experts: Int, hidden: Int, intermediate: Int, topK: Int)]
        public let sampling: (rows: Int, vocabulary: Int)

        /// Qwen3-30B-A3B's shapes among others: for a GPU.
        public static let full = Sizes(
            rows: 37, width: 2048,
            matmuls: [(1, 2048, 4096, false), (1, 2048, 128, false), (3, 4096, 2048, false), (4, 2048, 512, true),
                      (77, 2048, 512, true), (300, 4096, 2048, false)],
            projections: [(1, 2048, (4096, 512, 512)), (4, 2048, (4096, 512, 512)), (64, 2048, (4096, 512, 512))],
            attention: [(8, 2, 128, 0), (32, 4, 128, 0), (4, 2, 16, 0), (4, 2, 16, 7), (12, 2, 64, 0), (32, 1, 64, 0), (4, 2, 24, 0)],
            routing: [(300, 128, 8), (5, 8, 2)],
            latent: [(16, 128, 64, 512, 128), (128, 128, 64, 512, 128)],
            experts: [(1, 16, 256, 96, 4), (9, 16, 256, 96, 4), (130, 16, 256, 96, 4), (1, 128, 2048, 768, 8), (8, 128, 2048, 768, 8),
                      (64, 32, 2048, 768, 8),
                      (1024, 32, 2048, 768, 8)],
            sampling: (64, 151_936))

        /// Every code path (tails, GQA groups, windows, head dims the tensor-core attention does not
        /// take, several row tiles per expert, experts through cuBLAS at prefill sizes) at sizes a
        /// CPU emulating the GPU thread by thread gets through in seconds.
        public static let small = Sizes(
            rows: 5, width: 64,
            matmuls: [(1, 64, 48, false), (7, 32, 24, true), (3, 40, 3, true), (2, 36, 5, false), (2, 64, 20, false),
                      (20, 64, 48, true)],
            projections: [(1, 64, (64, 16, 16)), (3, 64, (32, 8, 8)), (2, 64, (30, 6, 6)), (6, 64, (32, 8, 8))],
            attention: [(4, 2, 16, 0), (4, 2, 16, 7), (6, 2, 32, 0), (4, 2, 24, 0)],
            routing: [(9, 40, 8), (3, 8, 2)],
            latent: [(4, 16, 8, 32, 16), (3, 8, 16, 64, 8)],
            experts: [(3, 5, 64, 24, 2), (70, 4, 32, 16, 2), (600, 8, 64, 24, 2)],
            sampling: (3, 300))
    }

    public let parity: OperatorParity
    public let sizes: Sizes

    public init(parity: OperatorParity, sizes: Sizes) {
        self.parity = parity
        self.sizes = sizes
    }

    public func runAll() throws {
        try checkElementwise()
        try checkMatmuls()
        for shape in sizes.attention {
            for decode in [false, true] {
                try checkAttention(heads: shape.heads, kvHeads: shape.kvHeads, headDim: shape.headDim, window: shape.window, decode: decode)
            }
        }
        // GPT-OSS's sinks, through the split decode, its merge and the prefill kernel.
        if let shape = sizes.attention.first {
            for decode in [false, true] {
                try checkAttention(heads: shape.heads, kvHeads: shape.kvHeads, headDim: shape.headDim, window: shape.window, decode: decode,
                                   sinks: true)
            }
        }
        for shape in sizes.attention where shape.headDim % 32 == 0 {
            for normed in [true, false] {
                try checkPrepareAttention(tokens: 6, heads: shape.heads, kvHeads: shape.kvHeads, headDim: shape.headDim, normed: normed)
            }
        }
        for shape in sizes.routing { try checkRouting(tokens: shape.tokens, experts: shape.experts, topK: shape.topK) }
        for shape in sizes.latent {
            for decode in [false, true] {
                try checkLatentAttention(heads: shape.heads, nope: shape.nope, rope: shape.rope, latent: shape.latent, value: shape.value,
                                         decode: decode)
            }
        }
        for shape in sizes.experts {
            try checkExperts(tokens: shape.tokens, experts: shape.experts, hidden: shape.hidden, intermediate: shape.intermediate,
                             topK: shape.topK)
        }
        try checkSampling()
    }

    func checkElementwise() throws {
        let rows = sizes.rows, width = sizes.width
        let x = try parity.activations(parity.random(rows * width, scale: 3), Shape(rows, width))
        let y = try parity.activations(parity.random(rows * width), Shape(rows, width))
        let out = try parity.empty(Shape(rows, width))
        try parity.onBoth { backend, pick in
            try backend.add(pick(x), pick(y), into: pick(out))
        }
        try parity.compare("add", out, tolerance: 4e-3)

        let norm = try parity.weight(parity.random(width, scale: 2), Shape(width))
        try parity.onBoth { backend, pick in
            try backend.rmsNorm(pick(x), weight: pick(norm), epsilon: 1e-6, into: pick(out))
        }
        try parity.compare("rmsNorm", out, tolerance: 8e-3)

        // In place, as the model runs it: the sum replaces the residual stream.
        let stream = try parity.activations(parity.random(rows * width, scale: 3), Shape(rows, width))
        try parity.onBoth { backend, pick in
            try backend.addRMSNorm(pick(stream), pick(y), weight: pick(norm), epsilon: 1e-6, sum: pick(stream), normed: pick(out))
        }
        try parity.compare("addRMSNorm: sum", stream, tolerance: 4e-3)
        try parity.compare("addRMSNorm: normed", out, tolerance: 8e-3)

        let half = width / 2
        let gateUp = try parity.activations(parity.random(rows * width, scale: 4), Shape(rows, width))
        let activated = try parity.empty(Shape(rows, half))
        try parity.onBoth { backend, pick in
            try backend.siluMul(pick(gateUp), into: pick(activated))
        }
        try parity.compare("siluMul", activated, tolerance: 8e-3)

        let gate = try parity.activations(parity.random(rows, scale: 3), Shape(rows, 1))
        let accumulated = try parity.activations(parity.random(rows * width), Shape(rows, width))
        try parity.onBoth { backend, pick in
            try backend.addSigmoidGated(pick(y), gate: pick(gate), into: pick(accumulated))
        }
        try parity.compare("addSigmoidGated", accumulated, tolerance: 8e-3)

        let clamped = try parity.activations(parity.random(rows * width, scale: 3), Shape(rows, width))
        try parity.onBoth { backend, pick in try backend.clamp(pick(clamped), limit: 1.5) }
        try parity.compare("clamp", clamped, tolerance: 0)

        let vocabulary = 1000, tableWidth = min(width, 256)
        let table = try parity.weight(parity.random(vocabulary * tableWidth), Shape(vocabulary, tableWidth))
        let ids = try parity.integers((0..<rows).map { _ in Int32(parity.randomIndex(vocabulary)) }, Shape(rows))
        let embedded = try parity.empty(Shape(rows, tableWidth))
        let gathered = try parity.empty(Shape(5, tableWidth))
        let picked = try parity.integers([3, 0, Int32(rows - 1), 3, Int32(rows / 2)], Shape(5))
        try parity.onBoth { backend, pick in
            try backend.embedding(pick(ids), table: pick(table), into: pick(embedded))
            try backend.gatherRows(pick(embedded), rows: pick(picked), into: pick(gathered))
        }
        try parity.compare("embedding", embedded, tolerance: 0)
        try parity.compare("gatherRows", gathered, tolerance: 0)

        let seeded = try parity.empty(Shape(3, 1000))
        try parity.onBoth { backend, pick in try backend.fillUniform(pick(seeded), seed: 99, bound: 0.3) }
        // The device holds bf16: rounding the float32 reference is the whole difference.
        try parity.compare("fillUniform", seeded, tolerance: 4e-3)
    }

    func checkMatmuls() throws {
        for (tokens, inner, outputs, biased) in sizes.matmuls {
            let x = try parity.activations(parity.random(tokens * inner), Shape(tokens, inner))
            let w = try parity.weight(parity.random(outputs * inner, scale: 0.05), Shape(outputs, inner))
            let bias = biased ? try parity.weight(parity.random(outputs), Shape(outputs)) : nil
            let out = try parity.empty(Shape(tokens, outputs))
            try parity.onBoth { backend, pick in
                try backend.matmul(pick(x), weight: pick(w), bias: bias.map(pick), into: pick(out))
            }
            try parity.compare("matmul \(tokens)×\(inner)→\(outputs)\(biased ? " +bias" : "")", out, tolerance: 8e-3)
        }
        for (tokens, inner, outputs) in sizes.projections {
            let x = try parity.activations(parity.random(tokens * inner), Shape(tokens, inner))
            var pairs: [(weight: OperatorParity.Pair, bias: OperatorParity.Pair?, out: OperatorParity.Pair)] = []
            for (index, columns) in [outputs.0, outputs.1, outputs.2].enumerated() {
                pairs.append((try parity.weight(parity.random(columns * inner, scale: 0.05), Shape(columns, inner)),
                              index == 2 ? try parity.weight(parity.random(columns), Shape(columns)) : nil,
                              try parity.empty(Shape(tokens, columns))))
            }
            try parity.onBoth { backend, pick in
                let projections = pairs.map { Projection(weight: pick($0.weight), bias: $0.bias.map(pick), out: pick($0.out)) }
                try backend.matmuls(pick(x), projections[0], projections[1], projections[2])
            }
            for (index, pair) in pairs.enumerated() {
                try parity.compare("matmuls \(tokens)×\(inner)→\(outputs), projection \(index)\(index == 2 ? " +bias" : "")", pair.out,
                                   tolerance: 8e-3)
            }
        }
        let vocabulary = sizes.sampling.vocabulary, inner = sizes.width
        let head = try parity.weight(parity.random(vocabulary * inner, scale: 0.05), Shape(vocabulary, inner))
        for rows in [4, 12] {
            let logits = try parity.empty(Shape(rows, vocabulary), .float32)
            let x = try parity.activations(parity.random(rows * inner), Shape(rows, inner))
            try parity.onBoth { backend, pick in
                try backend.matmul(pick(x), weight: pick(head), bias: nil, into: pick(logits))
            }
            try parity.compare("matmul of \(rows) rows to float32 logits", logits, tolerance: 1e-4)
        }
    }

    /// The fused per-head norms, rotary and cache store against the three operators in turn.
    func checkPrepareAttention(tokens: Int, heads: Int, kvHeads: Int, headDim: Int, normed: Bool) throws {
        let kvWidth = kvHeads * headDim, positionCount = 64, half = headDim / 2
        var slots = Array(0..<Int32(positionCount))
        for index in slots.indices.reversed() { slots.swapAt(index, parity.randomIndex(index + 1)) }
        let positions = (0..<tokens).map { _ in Int32(parity.randomIndex(positionCount)) }
        var cosines: [Float] = [], sines: [Float] = []
        for position in 0..<positionCount {
            for i in 0..<half {
                let angle = Float(position) * powf(10_000, -Float(2 * i) / Float(headDim))
                cosines.append(cosf(angle))
                sines.append(sinf(angle))
            }
        }
        let table = (cos: try parity.float32(cosines, Shape(positionCount, half)), sin: try parity.float32(sines, Shape(positionCount, half)))
        let queries = try parity.activations(parity.random(tokens * heads * headDim, scale: 2), Shape(tokens, heads * headDim))
        let keys = try parity.activations(parity.random(tokens * kvWidth, scale: 2), Shape(tokens, kvWidth))
        let values = try parity.activations(parity.random(tokens * kvWidth), Shape(tokens, kvWidth))
        let queryNorm = try parity.weight(parity.random(headDim).map { 1 + $0 / 4 }, Shape(headDim))
        let keyNorm = try parity.weight(parity.random(headDim).map { 1 + $0 / 4 }, Shape(headDim))
        let cache = (keys: try parity.empty(Shape(4, 16, kvWidth)), values: try parity.empty(Shape(4, 16, kvWidth)))
        let positionPair = try parity.integers(positions, Shape(tokens))
        let slotPair = try parity.integers(Array(slots.prefix(tokens)), Shape(tokens))
        let ownerPair = try parity.integers([Int32](repeating: 0, count: tokens), Shape(tokens))
        let tablePair = try parity.integers([0, 1, 2, 3], Shape(1, 4))
        try parity.onBoth { backend, pick in
            try backend.prepareAttention(
                queries: pick(queries), keys: pick(keys), values: pick(values),
                norms: normed ? QueryKeyNorms(query: pick(queryNorm), key: pick(keyNorm), epsilon: 1e-6) : nil,
                table: RotaryTable(cos: pick(table.cos), sin: pick(table.sin)), headDim: headDim,
                cache: LayerKVCache(keys: pick(cache.keys), values: pick(cache.values)),
                batch: AttentionBatch(tokenCount: tokens, positions: pick(positionPair), slotMapping: pick(slotPair),
                                      tokenRequests: pick(ownerPair), blockTables: pick(tablePair)))
        }
        let name = "prepareAttention \(tokens) tokens, \(heads)/\(kvHeads) heads × \(headDim)\(normed ? ", normed" : "")"
        try parity.compare(name + ": queries", queries, tolerance: 2e-2)
        try parity.compare(name + ": cached keys", cache.keys, tolerance: 2e-2)
        try parity.compare(name + ": cached values", cache.values, tolerance: 0)
    }

    /// Five requests in one step (``pagedRequests``) through a paged cache with shuffled blocks, the
    /// first a leading decode (which the CUDA backend runs apart); or (`decode`) a decode step of
    /// two, whose few tokens the CUDA kernel splits over blocks by keys.
    func checkAttention(heads: Int, kvHeads: Int, headDim: Int, window: Int, decode: Bool, sinks: Bool = false) throws {
        let blockSize = 16, blockCount = 40, kvWidth = kvHeads * headDim, tableWidth = 13
        let (tables, step, history) = pagedRequests(decode: decode, blockSize: blockSize, blockCount: blockCount, tableWidth: tableWidth)
        let (positions, slots, owners) = (step.positions, step.slots, step.owners)
        let requestCount = tables.count / tableWidth
        let tokens = positions.count
        let cache = (keys: try parity.empty(Shape(blockCount, blockSize, kvWidth)), values: try parity.empty(Shape(blockCount, blockSize, kvWidth)))
        let queries = try parity.activations(parity.random(tokens * heads * headDim, scale: 2), Shape(tokens, heads * headDim))
        let keys = try parity.activations(parity.random(tokens * kvWidth, scale: 2), Shape(tokens, kvWidth))
        let values = try parity.activations(parity.random(tokens * kvWidth), Shape(tokens, kvWidth))
        let oldKeys = try parity.activations(parity.random(history.slots.count * kvWidth, scale: 2), Shape(history.slots.count, kvWidth))
        let oldValues = try parity.activations(parity.random(history.slots.count * kvWidth), Shape(history.slots.count, kvWidth))
        let positionPair = try parity.integers(positions, Shape(tokens)), slotPair = try parity.integers(slots, Shape(tokens))
        let ownerPair = try parity.integers(owners, Shape(tokens))
        let tablePair = try parity.integers(tables, Shape(requestCount, tableWidth))
        let historyPositions = try parity.integers(history.positions, Shape(history.positions.count))
        let historySlots = try parity.integers(history.slots, Shape(history.slots.count))
        let historyOwners = try parity.integers(history.owners, Shape(history.positions.count))
        let out = try parity.empty(Shape(tokens, heads * headDim))
        let sinkValues = try parity.weight(parity.random(heads, scale: 3), Shape(heads))
        try parity.onBoth { backend, pick in
            let parameters = AttentionParameters(headCount: heads, kvHeadCount: kvHeads, headDim: headDim,
                                                 scale: 1 / Float(headDim).squareRoot(), slidingWindow: window > 0 ? window : nil,
                                                 sinks: sinks ? pick(sinkValues) : nil)
            let layer = LayerKVCache(keys: pick(cache.keys), values: pick(cache.values))
            try backend.storeKV(keys: pick(oldKeys), values: pick(oldValues), cache: layer, batch: AttentionBatch(
                tokenCount: history.slots.count, positions: pick(historyPositions), slotMapping: pick(historySlots),
                tokenRequests: pick(historyOwners), blockTables: pick(tablePair)))
            let batch = AttentionBatch(tokenCount: tokens, positions: pick(positionPair), slotMapping: pick(slotPair),
                                       tokenRequests: pick(ownerPair), blockTables: pick(tablePair), leadingDecodeRows: decode ? tokens : 1)
            try backend.storeKV(keys: pick(keys), values: pick(values), cache: layer, batch: batch)
            try backend.attention(pick(queries), cache: layer, batch: batch, parameters: parameters, into: pick(out))
        }
        try parity.compare("attention \(heads)/\(kvHeads) heads × \(headDim)\(window > 0 ? " window \(window)" : "")\(decode ? " decode" : "")"
                           + (sinks ? " sinks" : ""),
                           out, tolerance: 1e-2)
    }

    /// Where a step's tokens and the cache's earlier rows sit.
    struct PagedTokens {
        var positions: [Int32] = [], slots: [Int32] = [], owners: [Int32] = []
    }

    /// The attention checks' requests, each in shuffled blocks of a paged cache: a decode at 200, a
    /// prefill of 40 from position 0, a chunk of 5 from position 60, a decode at 37 and a chunk of 18
    /// from 130 (the first a leading decode, the fourth among the prefill rows, the last filling a
    /// prefill tile whose first keys every row sees whole), or (`decode`) decodes at 200 and 37.
    /// The positions before each request's first are its history, cached by earlier steps.
    func pagedRequests(decode: Bool, blockSize: Int, blockCount: Int, tableWidth: Int)
        -> (tables: [Int32], step: PagedTokens, history: PagedTokens) {
        let requests: [(start: Int, count: Int)] = decode ? [(200, 1), (37, 1)] : [(200, 1), (0, 40), (60, 5), (37, 1), (130, 18)]
        var free = Array(0..<blockCount)
        for index in free.indices.reversed() { free.swapAt(index, parity.randomIndex(index + 1)) }
        var tables = [Int32](repeating: 0, count: requests.count * tableWidth)
        var step = PagedTokens(), history = PagedTokens()
        for (row, request) in requests.enumerated() {
            for block in 0..<((request.start + request.count + blockSize - 1) / blockSize) {
                tables[row * tableWidth + block] = Int32(free.removeLast())
            }
            for position in 0..<(request.start + request.count) {
                let slot = tables[row * tableWidth + position / blockSize] * Int32(blockSize) + Int32(position % blockSize)
                if position < request.start {
                    history.positions.append(Int32(position))
                    history.slots.append(slot)
                    history.owners.append(Int32(row))
                } else {
                    step.positions.append(Int32(position))
                    step.slots.append(slot)
                    step.owners.append(Int32(row))
                }
            }
        }
        return (tables, step, history)
    }

    /// Softmax top-k renormalised (Qwen, Mixtral), DeepSeek-V2's group-limited greedy (groups by
    /// their best expert), and DeepSeek-V3's sigmoid scores with a correction bias, groups by their
    /// two best, renormalised and scaled.
    func checkRouting(tokens: Int, experts: Int, topK: Int) throws {
        let logits = try parity.activations(parity.random(tokens * experts, scale: 4), Shape(tokens, experts))
        let bias = try parity.weight(parity.random(experts, scale: 0.3), Shape(experts))
        let groupCount = experts % 8 == 0 && experts / 8 >= 2 && experts / 8 * 4 >= topK ? 8 : 4
        let variants: [(name: String, parameters: RoutingParameters, biased: Bool)] = [
            ("softmax", RoutingParameters(topK: topK, isRenormalized: true, scoring: .softmax), false),
            ("grouped softmax", RoutingParameters(topK: topK, isRenormalized: false, scoring: .softmax,
                                                  groups: ExpertGroups(count: groupCount, selected: groupCount / 2, score: .maximum)), false),
            ("sigmoid", RoutingParameters(topK: topK, isRenormalized: true, scoring: .sigmoid,
                                          groups: ExpertGroups(count: groupCount, selected: groupCount / 2, score: .topTwoSum),
                                          scalingFactor: 2.5), true),
        ]
        for variant in variants {
            let picks = try parity.empty(Shape(tokens, topK), .int32)
            let weights = try parity.empty(Shape(tokens, topK), .float32)
            try parity.onBoth { backend, pick in
                try backend.routeTopK(pick(logits), bias: variant.biased ? pick(bias) : nil, parameters: variant.parameters,
                                      into: Routing(experts: pick(picks), weights: pick(weights)))
            }
            try parity.compareIntegers("routeTopK \(variant.name) picks, \(tokens) tokens of \(experts) top-\(topK)", picks, tolerance: 0)
            try parity.compare("routeTopK \(variant.name) weights, \(tokens) tokens", weights, tolerance: 1e-5)
        }
    }

    /// DeepSeek's latent attention as the model runs it: earlier positions cached by a previous
    /// step, then a step's queries absorbed into the latent space (``Backend/headMatmul``), its
    /// rows cached and its rotary queries placed, attention, and the value up-projection. The same
    /// requests as ``checkAttention``'s.
    func checkLatentAttention(heads: Int, nope: Int, rope: Int, latent: Int, value: Int, decode: Bool) throws {
        let blockSize = 16, blockCount = 40, width = latent + rope, half = rope / 2, positionCount = 256, tableWidth = 13
        let (tables, step, history) = pagedRequests(decode: decode, blockSize: blockSize, blockCount: blockCount, tableWidth: tableWidth)
        var cosines: [Float] = [], sines: [Float] = []
        for position in 0..<positionCount {
            for i in 0..<half {
                let angle = Float(position) * powf(10_000, -Float(2 * i) / Float(rope))
                cosines.append(cosf(angle))
                sines.append(sinf(angle))
            }
        }
        let table = (cos: try parity.float32(cosines, Shape(positionCount, half)), sin: try parity.float32(sines, Shape(positionCount, half)))
        let norm = try parity.weight(parity.random(latent).map { 1 + $0 / 4 }, Shape(latent))
        let absorbed = try parity.weight(parity.random(heads * latent * nope, scale: 1 / Float(nope).squareRoot()), Shape(heads, latent, nope))
        let valueUp = try parity.weight(parity.random(heads * value * latent, scale: 1 / Float(latent).squareRoot()), Shape(heads, value, latent))
        let parameters = LatentAttentionParameters(headCount: heads, nopeWidth: nope, ropeWidth: rope, latentWidth: latent,
                                                   valueWidth: value, scale: 1 / Float(nope + rope).squareRoot())
        let cache = try parity.empty(Shape(blockCount, blockSize, width))
        let tablePair = try parity.integers(tables, Shape(tables.count / tableWidth, tableWidth))
        func inputs(_ layout: PagedTokens) throws
            -> (queries: OperatorParity.Pair, latent: OperatorParity.Pair, positions: OperatorParity.Pair, slots: OperatorParity.Pair,
                owners: OperatorParity.Pair, latentQueries: OperatorParity.Pair) {
            let count = layout.positions.count
            return (try parity.activations(parity.random(count * heads * (nope + rope), scale: 2), Shape(count, heads * (nope + rope))),
                    try parity.activations(parity.random(count * width, scale: 2), Shape(count, width)),
                    try parity.integers(layout.positions, Shape(count)), try parity.integers(layout.slots, Shape(count)),
                    try parity.integers(layout.owners, Shape(count)), try parity.empty(Shape(count, heads * width)))
        }
        let old = try inputs(history), new = try inputs(step)
        let tokens = step.positions.count
        let attendedLatent = try parity.empty(Shape(tokens, heads * latent)), attended = try parity.empty(Shape(tokens, heads * value))
        try parity.onBoth { backend, pick in
            let layer = LayerKVCache(keys: pick(cache), values: pick(cache))
            let rotary = RotaryTable(cos: pick(table.cos), sin: pick(table.sin))
            for (part, count) in [(old, history.positions.count), (new, tokens)] where count > 0 {
                let batch = AttentionBatch(tokenCount: count, positions: pick(part.positions), slotMapping: pick(part.slots),
                                           tokenRequests: pick(part.owners), blockTables: pick(tablePair))
                try backend.headMatmul(pick(part.queries), columns: HeadColumns(width: nope, stride: nope + rope), weight: pick(absorbed),
                                       into: pick(part.latentQueries), columns: HeadColumns(width: latent, stride: width))
                try backend.prepareLatentAttention(queries: pick(part.queries), latent: pick(part.latent), norm: pick(norm), epsilon: 1e-6,
                                                   table: rotary, parameters: parameters, cache: layer, batch: batch,
                                                   into: pick(part.latentQueries))
            }
            let batch = AttentionBatch(tokenCount: tokens, positions: pick(new.positions), slotMapping: pick(new.slots),
                                       tokenRequests: pick(new.owners), blockTables: pick(tablePair))
            try backend.latentAttention(pick(new.latentQueries), cache: layer, batch: batch, parameters: parameters, into: pick(attendedLatent))
            try backend.headMatmul(pick(attendedLatent), columns: HeadColumns(width: latent, stride: latent), weight: pick(valueUp),
                                   into: pick(attended), columns: HeadColumns(width: value, stride: value))
        }
        let name = "latent attention \(heads) heads, \(nope)+\(rope) → \(latent) → \(value)\(decode ? " decode" : "")"
        try parity.compare(name + ": latent queries", new.latentQueries, tolerance: 2e-2)
        try parity.compare(name + ": cache rows", cache, tolerance: 2e-2)
        try parity.compare(name + ": attended latent", attendedLatent, tolerance: 2e-2)
        try parity.compare(name + ": output", attended, tolerance: 2e-2)
    }

    func checkExperts(tokens: Int, experts: Int, hidden: Int, intermediate: Int, topK: Int) throws {
        let x = try parity.activations(parity.random(tokens * hidden), Shape(tokens, hidden))
        let gateUp = try parity.weight(parity.random(experts * 2 * intermediate * hidden, scale: 1.7 / Float(hidden).squareRoot()),
                                       Shape(experts, 2 * intermediate, hidden))
        let down = try parity.weight(parity.random(experts * hidden * intermediate, scale: 1.7 / Float(intermediate).squareRoot()),
                                     Shape(experts, hidden, intermediate))
        var picks: [Int32] = [], weights: [Float] = []
        for _ in 0..<tokens {
            var chosen: [Int32] = []
            while chosen.count < topK {
                let expert = Int32(parity.randomIndex(experts))
                if !chosen.contains(expert) { chosen.append(expert) }
            }
            picks += chosen
            weights += parity.random(topK).map { abs($0) / Float(topK) }
        }
        let pickPair = try parity.integers(picks, Shape(tokens, topK))
        let weightPair = try parity.float32(weights, Shape(tokens, topK))
        let out = try parity.empty(Shape(tokens, hidden))
        try parity.onBoth { backend, pick in
            try backend.expertMLP(pick(x), experts: ExpertWeights(gateUp: pick(gateUp), down: pick(down)),
                                  routing: Routing(experts: pick(pickPair), weights: pick(weightPair)), into: pick(out))
        }
        try parity.compare("expertMLP \(tokens) tokens, \(experts) experts \(hidden)→\(intermediate) top-\(topK)", out, tolerance: 2e-2)

        // GPT-OSS's experts: biases and the clamped SwiGLU (scaled inputs reach its limit).
        let gateUpBias = try parity.weight(parity.random(experts * 2 * intermediate, scale: 0.5), Shape(experts, 2 * intermediate))
        let downBias = try parity.weight(parity.random(experts * hidden, scale: 0.5), Shape(experts, hidden))
        let large = try parity.activations(parity.random(tokens * hidden, scale: 6), Shape(tokens, hidden))
        try parity.onBoth { backend, pick in
            let weights = ExpertWeights(gateUp: pick(gateUp), down: pick(down), gateUpBias: pick(gateUpBias), downBias: pick(downBias),
                                        activation: .clampedSwiGLU(alpha: 1.702, limit: 7))
            try backend.expertMLP(pick(large), experts: weights, routing: Routing(experts: pick(pickPair), weights: pick(weightPair)),
                                  into: pick(out))
        }
        try parity.compare("expertMLP with biases and clamped SwiGLU, \(tokens) tokens, \(experts) experts", out, tolerance: 2e-2)

        let rows = try parity.activations(parity.random(tokens * topK * hidden), Shape(tokens * topK, hidden))
        try parity.onBoth { backend, pick in
            try backend.combineExperts(pick(rows), weights: pick(weightPair), into: pick(out))
        }
        try parity.compare("combineExperts \(tokens) tokens", out, tolerance: 8e-3)
    }

    func checkSampling() throws {
        let (rows, vocabulary) = sizes.sampling
        let logits = try parity.float32(parity.random(rows * vocabulary, scale: 8), Shape(rows, vocabulary))
        let temperatures = try parity.float32((0..<rows).map { $0 % 4 == 0 ? 0 : Float($0 % 3 + 1) * 0.5 }, Shape(rows))
        let keys = try parity.integers((0..<(2 * rows)).map { _ in Int32(truncatingIfNeeded: parity.randomIndex(1 << 31)) }, Shape(rows, 2))
        let tokens = try parity.empty(Shape(rows), .int32)
        try parity.onBoth { backend, pick in
            try backend.sampleTokens(pick(logits), temperatures: pick(temperatures), keys: pick(keys), into: pick(tokens))
        }
        // logf may differ by an ulp between the GPU and glibc, which can flip a near-tie draw.
        try parity.compareIntegers("sampleTokens \(rows) rows of \(vocabulary)", tokens, tolerance: 0.05)
    }
}
