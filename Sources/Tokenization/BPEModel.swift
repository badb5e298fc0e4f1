/// Byte-pair encoding as `tokenizers`' `BPE` model does it: a word starts as one symbol per
/// character (a byte-level scalar, or a SentencePiece character), a character missing from the
/// vocabulary becomes its UTF-8 bytes as `<0xNN>` tokens (`byte_fallback`) or the unknown token,
/// and the adjacent pair of lowest merge rank (the leftmost on a tie) is merged until none is left.
import Jinja

struct BPEModel: Sendable {
    let idByToken: [ScalarKey: Int]
    let tokenByID: [Int: String]
    /// Key: left id << 32 | right id. Value: merge rank and the merged token's id.
    private let merges: [UInt64: (rank: Int32, merged: Int32)]
    /// Llama 3 style: a word that is itself in the vocabulary is emitted whole.
    let ignoresMerges: Bool
    private let unknownID: Int?
    private let fusesUnknown: Bool
    /// `byteIDs[b]` is the id of `<0xNN>` for byte `b`, when `byte_fallback` is on.
    private let byteIDs: [Int]?

    init(vocabulary: [ScalarKey: Int], merges pairs: [(String, String)], ignoresMerges: Bool, unknownToken: String?,
         fusesUnknown: Bool, byteFallback: Bool, file: String) throws {
        idByToken = vocabulary
        var tokenByID: [Int: String] = [:]
        for (token, id) in vocabulary { tokenByID[id] = token.text }
        self.tokenByID = tokenByID
        var merges: [UInt64: (Int32, Int32)] = [:]
        for (rank, pair) in pairs.enumerated() {
            guard let left = vocabulary[ScalarKey(pair.0)], let right = vocabulary[ScalarKey(pair.1)],
                  let merged = vocabulary[ScalarKey(pair.0 + pair.1)] else {
                throw TokenizationError.badFile(file: file, reason: "merge \(rank) '\(pair.0) \(pair.1)' uses tokens missing from the vocabulary")
            }
            let key = UInt64(left) << 32 | UInt64(right)
            if merges[key] == nil { merges[key] = (Int32(rank), Int32(merged)) }
        }
        self.merges = merges
        self.ignoresMerges = ignoresMerges
        if let unknownToken {
            guard let id = vocabulary[ScalarKey(unknownToken)] else {
                throw TokenizationError.badFile(file: file, reason: "unk_token '\(unknownToken)' is not in the vocabulary")
            }
            unknownID = id
        } else {
            unknownID = nil
        }
        self.fusesUnknown = fusesUnknown
        if byteFallback {
            byteIDs = try (0..<256).map { byte in
                let token = "<0x" + Self.hexByte(byte) + ">"
                guard let id = vocabulary[ScalarKey(token)] else {
                    throw TokenizationError.badFile(file: file, reason: "byte_fallback needs \(token) in the vocabulary")
                }
                return id
            }
        } else {
            byteIDs = nil
        }
    }

    static func hexByte(_ byte: Int) -> String {
        let digits = Array("0123456789ABCDEF")
        return String([digits[byte >> 4], digits[byte & 15]])
    }

    /// The byte a `<0xNN>` token stands for, if `token` is one.
    static func fallbackByte(_ token: String) -> UInt8? {
        let scalars = Array(token.utf8)
        guard scalars.count == 6, scalars[0] == UInt8(ascii: "<"), scalars[1] == UInt8(ascii: "0"), scalars[2] == UInt8(ascii: "x"),
              scalars[5] == UInt8(ascii: ">") else { return nil }
        return UInt8(String(decoding: scalars[3...4], as: UTF8.self), radix: 16)
    }

    /// Appends the ids of one pre-tokenized word.
    func encode(word: String, into ids: inout [Int]) {
        if ignoresMerges, let whole = idByToken[ScalarKey(word)] {
            ids.append(whole)
            return
        }
        var symbols: [Int32] = []
        symbols.reserveCapacity(word.unicodeScalars.count)
        var previousWasUnknown = false
        for scalar in word.unicodeScalars {
            if let id = idByToken[ScalarKey(String(scalar))] {
                symbols.append(Int32(id))
                previousWasUnknown = false
            } else if let byteIDs {
                for byte in String(scalar).utf8 { symbols.append(Int32(byteIDs[Int(byte)])) }
                previousWasUnknown = false
            } else if let unknownID {
                // Without an unknown token the character is dropped, as `tokenizers` drops it.
                if !(fusesUnknown && previousWasUnknown) { symbols.append(Int32(unknownID)) }
                previousWasUnknown = true
            }
        }
        mergeAll(&symbols)
        for symbol in symbols { ids.append(Int(symbol)) }
    }

    /// `tokenizers`' `Word::merge_all`: a queue of candidate merges ordered by rank, then position;
    /// a candidate whose pair has changed since it was queued is skipped.
    private func mergeAll(_ symbols: inout [Int32]) {
        let count = symbols.count
        guard count > 1 else { return }
        var previous = Array(-1..<(count - 1))
        var next = Array(1...count)
        var alive = [Bool](repeating: true, count: count)
        var queue = MergeQueue()
        for index in 0..<(count - 1) {
            if let merge = merges[Self.key(symbols[index], symbols[index + 1])] {
                queue.push(MergeQueue.Entry(rank: merge.rank, position: Int32(index), merged: merge.merged))
            }
        }
        while let top = queue.pop() {
            let position = Int(top.position)
            guard alive[position], next[position] < count else { continue }
            let right = next[position]
            guard let merge = merges[Self.key(symbols[position], symbols[right])], merge.merged == top.merged else { continue }
            symbols[position] = top.merged
            alive[right] = false
            next[position] = next[right]
            if next[right] < count { previous[next[right]] = position }
            if previous[position] >= 0, let left = merges[Self.key(symbols[previous[position]], symbols[position])] {
                queue.push(MergeQueue.Entry(rank: left.rank, position: Int32(previous[position]), merged: left.merged))
            }
            if next[position] < count, let after = merges[Self.key(symbols[position], symbols[next[position]])] {
                queue.push(MergeQueue.Entry(rank: after.rank, position: Int32(position), merged: after.merged))
            }
        }
        var kept: [Int32] = []
        kept.reserveCapacity(count)
        for index in 0..<count where alive[index] { kept.append(symbols[index]) }
        symbols = kept
    }

    private static func key(_ left: Int32, _ right: Int32) -> UInt64 { UInt64(UInt32(left)) << 32 | UInt64(UInt32(right)) }
}

/// A binary min-heap of candidate merges, by rank and then position.
private struct MergeQueue {
    struct Entry {
        let rank: Int32
        let position: Int32
        let merged: Int32

        func precedes(_ other: Entry) -> Bool { rank != other.rank ? rank < other.rank : position < other.position }
    }

    private var entries: [Entry] = []

    mutating func push(_ entry: Entry) {
        entries.append(entry)
        var child = entries.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard entries[child].precedes(entries[parent]) else { break }
            entries.swapAt(child, parent)
            child = parent
        }
    }

    mutating func pop() -> Entry? {
        guard let first = entries.first else { return nil }
        let last = entries.removeLast()
        if !entries.isEmpty {
            entries[0] = last
            var parent = 0
            while true {
                let left = 2 * parent + 1, right = left + 1
                var best = parent
                if left < entries.count, entries[left].precedes(entries[best]) { best = left }
                if right < entries.count, entries[right].precedes(entries[best]) { best = right }
                guard best != parent else { break }
                entries.swapAt(parent, best)
                parent = best
            }
        }
        return first
    }
}
