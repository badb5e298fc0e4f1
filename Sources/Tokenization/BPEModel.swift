/// Byte-pair encoding over a vocabulary of byte-level strings: a word starts as one symbol per
/// byte, and the adjacent pair with the lowest merge rank is merged until none is left.
struct BPEModel: Sendable {
    let idByToken: [String: Int]
    let tokenByID: [Int: String]
    /// Key: left id << 32 | right id. Value: merge rank and the merged token's id.
    private let merges: [UInt64: (rank: Int32, merged: Int32)]
    /// Llama 3 style: a word that is itself in the vocabulary is emitted whole.
    let ignoresMerges: Bool

    init(vocabulary: [String: Int], merges pairs: [(String, String)], ignoresMerges: Bool, file: String) throws {
        idByToken = vocabulary
        var tokenByID: [Int: String] = [:]
        for (token, id) in vocabulary { tokenByID[id] = token }
        self.tokenByID = tokenByID
        var merges: [UInt64: (Int32, Int32)] = [:]
        for (rank, pair) in pairs.enumerated() {
            guard let left = vocabulary[pair.0], let right = vocabulary[pair.1],
                  let merged = vocabulary[pair.0 + pair.1] else {
                throw TokenizationError.badFile(file: file, reason: "merge \(rank) '\(pair.0) \(pair.1)' uses tokens missing from the vocabulary")
            }
            let key = UInt64(left) << 32 | UInt64(right)
            if merges[key] == nil { merges[key] = (Int32(rank), Int32(merged)) }
        }
        self.merges = merges
        self.ignoresMerges = ignoresMerges
    }

    /// Appends the ids of one pre-tokenized word, given as byte-level scalars.
    func encode(word: String, into ids: inout [Int]) {
        if ignoresMerges, let whole = idByToken[word] {
            ids.append(whole)
            return
        }
        var symbols: [Int32] = []
        symbols.reserveCapacity(word.unicodeScalars.count)
        for scalar in word.unicodeScalars {
            // Every byte-level scalar is in a byte-level vocabulary; a vocabulary without
            // the full alphabet loses the byte, as `tokenizers` does without an unknown token.
            if let id = idByToken[String(scalar)] { symbols.append(Int32(id)) }
        }
        while symbols.count > 1 {
            var bestRank = Int32.max
            var bestIndex = -1
            var bestMerged: Int32 = 0
            for index in 0..<(symbols.count - 1) {
                let key = UInt64(UInt32(symbols[index])) << 32 | UInt64(UInt32(symbols[index + 1]))
                if let merge = merges[key], merge.rank < bestRank {
                    bestRank = merge.rank
                    bestIndex = index
                    bestMerged = merge.merged
                }
            }
            guard bestIndex >= 0 else { break }
            symbols[bestIndex] = bestMerged
            symbols.remove(at: bestIndex + 1)
        }
        for symbol in symbols { ids.append(Int(symbol)) }
    }
}
