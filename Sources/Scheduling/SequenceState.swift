/// The scheduler's view of one request on one rank: its tokens, how many of them are in the KV
/// cache, and the cache blocks that hold them.
///
/// Owned by the rank's step loop. A reference type because the scheduler's queues and the
/// engine's per-request state point at the same sequence.
public final class SequenceState {
    public enum Phase: Sendable, Equatable {
        case waiting
        case running
        case finished
    }

    public let id: UInt64
    /// The owner's index for this sequence (the engine's slot of its request).
    public let tag: Int
    /// Tokens known so far: the prompt, then every generated token.
    public private(set) var tokenIDs: [Int32]
    public let promptCount: Int
    /// Tokens whose keys and values are in the cache; the rest are computed by later steps.
    public internal(set) var computedCount = 0
    public internal(set) var blocks: [Int32] = []
    /// The prefix hashes of the leading full blocks (``BlockAllocator/hash(parent:tokens:)``).
    public internal(set) var blockHashes: [UInt64] = []
    /// Whether this sequence may start after a cached prefix and leave its blocks cached: not when
    /// it asks for the log-probabilities of its prompt, which only a computed prompt gives.
    public let sharesPrefixes: Bool
    public internal(set) var phase: Phase = .waiting
    /// How many times the sequence lost its blocks to make room for others.
    public internal(set) var preemptionCount = 0

    public init(id: UInt64, tag: Int = 0, promptTokenIDs: [Int32], sharesPrefixes: Bool = true) {
        precondition(!promptTokenIDs.isEmpty, "a sequence needs at least one prompt token")
        self.id = id
        self.tag = tag
        self.sharesPrefixes = sharesPrefixes
        tokenIDs = promptTokenIDs
        promptCount = promptTokenIDs.count
    }

    public var generatedCount: Int { tokenIDs.count - promptCount }

    /// Records the token sampled at the end of a step that computed every known token.
    public func append(_ token: Int32) {
        precondition(computedCount == tokenIDs.count, "a token is appended only after all known tokens are computed")
        tokenIDs.append(token)
    }
}

/// One sequence's share of a step: positions `start ..< start + count` are computed.
public struct ScheduledChunk {
    public let sequence: SequenceState
    public let start: Int
    public let count: Int

    /// Whether this chunk reaches the last known token, so the step samples the next one.
    public var samples: Bool { start + count == sequence.tokenIDs.count }
}
