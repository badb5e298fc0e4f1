/// Precomputed cos and sin of every position's rotation angles, `[positions, rotaryDim / 2]` each,
/// float32. Scaling variants (linear, YaRN, Llama 3) only change the angles, so they live where
/// the table is built, not in the operator.
public struct RotaryTable: Sendable {
    public let cos: Tensor
    public let sin: Tensor

    public init(cos: Tensor, sin: Tensor) {
        self.cos = cos
        self.sin = sin
    }

    public var positionCount: Int { cos.shape[0] }
    public var rotaryDim: Int { cos.shape[1] * 2 }
}

public struct AttentionParameters: Sendable {
    public let headCount: Int
    public let kvHeadCount: Int
    public let headDim: Int
    public let scale: Float
    /// Tokens attend to at most this many most recent positions, their own included.
    public let slidingWindow: Int?
    /// GPT-OSS's attention sinks `[heads]`: a logit per head that joins every softmax's
    /// denominator and attends to nothing.
    public let sinks: Tensor?

    public init(headCount: Int, kvHeadCount: Int, headDim: Int, scale: Float, slidingWindow: Int?, sinks: Tensor? = nil) {
        precondition(headCount % kvHeadCount == 0, "\(headCount) heads do not divide into \(kvHeadCount) KV heads")
        precondition(sinks.map { $0.elementCount == headCount } ?? true, "one sink per head")
        self.headCount = headCount
        self.kvHeadCount = kvHeadCount
        self.headDim = headDim
        self.scale = scale
        self.slidingWindow = slidingWindow
        self.sinks = sinks
    }
}

/// Multi-head latent attention's sizes (DeepSeek-V2/V3). Each token caches one row of
/// `latentWidth + ropeWidth` values for every head: its compressed KV and its rotary key. A head's
/// query has a no-rope part of `nopeWidth` (absorbed into the latent space by the key
/// up-projection) and a rotary part of `ropeWidth`; its value is `valueWidth` wide once the value
/// up-projection has been applied to the attended latent.
public struct LatentAttentionParameters: Sendable {
    public let headCount: Int
    public let nopeWidth: Int
    public let ropeWidth: Int
    public let latentWidth: Int
    public let valueWidth: Int
    public let scale: Float

    public init(headCount: Int, nopeWidth: Int, ropeWidth: Int, latentWidth: Int, valueWidth: Int, scale: Float) {
        self.headCount = headCount
        self.nopeWidth = nopeWidth
        self.ropeWidth = ropeWidth
        self.latentWidth = latentWidth
        self.valueWidth = valueWidth
        self.scale = scale
    }

    /// Values a cache row holds.
    public var cacheWidth: Int { latentWidth + ropeWidth }
}

/// Where each head's columns are in a row: head h is `offset + h·stride ..< offset + h·stride + width`.
public struct HeadColumns: Sendable, Equatable {
    public let offset: Int
    public let width: Int
    public let stride: Int

    public init(offset: Int = 0, width: Int, stride: Int) {
        precondition(width <= stride, "head columns of \(width) do not fit a stride of \(stride)")
        self.offset = offset
        self.width = width
        self.stride = stride
    }
}

/// The paged KV cache of one attention layer: `keys` and `values` are
/// `[blockCount, blockSize, kvHeadCount·headDim]` in the backend's activation type. A latent
/// attention layer's cache is one tensor `[blockCount, blockSize, latent + rope]`, both fields.
public struct LayerKVCache: Sendable {
    public let keys: Tensor
    public let values: Tensor

    public init(keys: Tensor, values: Tensor) {
        self.keys = keys
        self.values = values
    }

    public var blockCount: Int { keys.shape[0] }
    public var blockSize: Int { keys.shape[1] }
}

/// Where each token of a step sits: its request, its position, the cache slot its key and value
/// go to, and each request's block table. Every field is an int32 tensor on the backend.
///
/// A token at position `p` attends to positions `0...p` of its own request (causal), read through
/// the block table: position `q` lives in block `blockTables[request][q / blockSize]`, row
/// `q % blockSize`.
public struct AttentionBatch: Sendable {
    public let tokenCount: Int
    public let positions: Tensor          // [t]
    public let slotMapping: Tensor        // [t]: block · blockSize + row
    public let tokenRequests: Tensor      // [t]: index into blockTables
    public let blockTables: Tensor        // [requests, maxBlocksPerRequest]
    /// The first rows that are each the one token of their request in the step (the decodes, which
    /// the scheduler puts first), each with a row of its own in `blockTables`: a backend may run
    /// them as a decode beside the step's prefill rows.
    public let leadingDecodeRows: Int

    public init(tokenCount: Int, positions: Tensor, slotMapping: Tensor, tokenRequests: Tensor, blockTables: Tensor,
                leadingDecodeRows: Int = 0) {
        self.tokenCount = tokenCount
        self.positions = positions
        self.slotMapping = slotMapping
        self.tokenRequests = tokenRequests
        self.blockTables = blockTables
        self.leadingDecodeRows = leadingDecodeRows
    }
}

/// How router logits become expert picks: scores (a softmax over the experts, or each logit's
/// sigmoid), optionally a per-expert bias added for the choice only (DeepSeek-V3's
/// `e_score_correction_bias`), optionally a choice limited to the best groups of experts, then the
/// top k. The picks' weights are their scores without the bias, renormalised when asked, times
/// `scalingFactor`.
public struct RoutingParameters: Sendable, Equatable {
    public enum Scoring: Sendable, Equatable {
        /// Softmax over all experts (Qwen, Mixtral, OLMoE, DeepSeek-V2, and GPT-OSS's softmax over
        /// the picked logits, which is the same as renormalising these).
        case softmax
        /// Each expert's sigmoid on its own (DeepSeek-V3).
        case sigmoid
    }

    public let topK: Int
    /// Whether the picked weights are divided by their sum so that they add up to one.
    public let isRenormalized: Bool
    public let scoring: Scoring
    public let groups: ExpertGroups?
    public let scalingFactor: Float

    public init(topK: Int, isRenormalized: Bool, scoring: Scoring, groups: ExpertGroups? = nil, scalingFactor: Float = 1) {
        self.topK = topK
        self.isRenormalized = isRenormalized
        self.scoring = scoring
        self.groups = groups
        self.scalingFactor = scalingFactor
    }
}

/// DeepSeek's group-limited routing: the experts split into `count` equal groups in index order,
/// each group is scored from its experts' choice scores, and a token picks only among the experts
/// of its `selected` best groups (the others' scores count as zero, as in transformers).
public struct ExpertGroups: Sendable, Equatable {
    public enum Score: Sendable, Equatable {
        /// The group's best expert (DeepSeek-V2's `group_limited_greedy`).
        case maximum
        /// The sum of its two best (DeepSeek-V3).
        case topTwoSum
    }

    public let count: Int
    public let selected: Int
    public let score: Score

    public init(count: Int, selected: Int, score: Score) {
        self.count = count
        self.selected = selected
        self.score = score
    }
}

/// The experts each token picked: `experts` `[t, topK]` int32 and `weights` `[t, topK]` float32,
/// in descending score order.
public struct Routing: Sendable {
    public let experts: Tensor
    public let weights: Tensor

    public init(experts: Tensor, weights: Tensor) {
        self.experts = experts
        self.weights = weights
    }

    public var topK: Int { experts.shape[1] }
}

/// What an expert computes between its two projections, from its gate and up rows.
public enum ExpertActivation: Sendable, Equatable {
    /// `silu(gate) · up` (every model but GPT-OSS).
    case silu
    /// GPT-OSS's: gate clamped to at most `limit`, up to ±`limit`,
    /// `(up + 1) · gate · σ(alpha · gate)`.
    case clampedSwiGLU(alpha: Float, limit: Float)
}

/// The stacked weights of a layer's experts: `gateUp` `[experts, 2·intermediate, hidden]` (gate rows
/// first, then up rows) and `down` `[experts, hidden, intermediate]`; GPT-OSS's biases
/// `gateUpBias` `[experts, 2·intermediate]` (the same order) and `downBias` `[experts, hidden]`.
public struct ExpertWeights: Sendable {
    public let gateUp: Tensor
    public let down: Tensor
    public let gateUpBias: Tensor?
    public let downBias: Tensor?
    public let activation: ExpertActivation

    public init(gateUp: Tensor, down: Tensor, gateUpBias: Tensor? = nil, downBias: Tensor? = nil, activation: ExpertActivation = .silu) {
        precondition(gateUp.shape[0] == down.shape[0] && gateUp.shape[1] == 2 * down.shape[2]
                     && gateUp.shape[2] == down.shape[1], "expert weights \(gateUp.shape) and \(down.shape) disagree")
        precondition(gateUpBias.map { $0.shape == Shape(gateUp.shape[0], gateUp.shape[1]) } ?? true
                     && downBias.map { $0.shape == Shape(down.shape[0], down.shape[1]) } ?? true, "expert biases disagree with the weights")
        self.gateUp = gateUp
        self.down = down
        self.gateUpBias = gateUpBias
        self.downBias = downBias
        self.activation = activation
    }

    public var expertCount: Int { gateUp.shape[0] }
    public var intermediateSize: Int { down.shape[2] }
    public var hiddenSize: Int { down.shape[1] }
    /// Whether the experts are plain SiLU-gated ones without biases, which every backend kernel runs.
    public var isPlain: Bool { gateUpBias == nil && downBias == nil && activation == .silu }
    /// The activation as kernels take it: whether it is the clamped SwiGLU, its α and limit.
    public var activationArguments: (clamped: Bool, alpha: Float, limit: Float) {
        switch activation {
        case .silu: (false, 0, 0)
        case .clampedSwiGLU(let alpha, let limit): (true, alpha, limit)
        }
    }

    /// Every tensor of the experts, each `[experts, …]`: what moving a slot copies a row of.
    public var slotTensors: [Tensor] { [gateUp, down] + [gateUpBias, downBias].compactMap { $0 } }
}

/// One of the projections ``Backend/matmuls(_:_:_:_:)`` runs: `out = x · weightᵀ (+ bias)`.
public struct Projection: Sendable {
    public let weight: Tensor
    public let bias: Tensor?
    public let out: Tensor

    public init(weight: Tensor, bias: Tensor?, out: Tensor) {
        self.weight = weight
        self.bias = bias
        self.out = out
    }
}

/// Per-head RMSNorm weights of queries and keys (Qwen3's q_norm and k_norm), each one head wide.
public struct QueryKeyNorms: Sendable {
    public let query: Tensor
    public let key: Tensor
    public let epsilon: Float

    public init(query: Tensor, key: Tensor, epsilon: Float) {
        self.query = query
        self.key = key
        self.epsilon = epsilon
    }
}
