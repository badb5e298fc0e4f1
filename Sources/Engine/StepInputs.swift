import Compute
import Scheduling

/// The host-side arrays of one step, rebuilt each step into storage that keeps its capacity, and
/// their upload into the backend's scratch arena.
struct StepInputs {
    var tokens: [Int32] = []
    var positions: [Int32] = []
    var slots: [Int32] = []
    var tokenRequests: [Int32] = []
    var logitRows: [Int32] = []
    var blockTables: [Int32] = []
    var requestCount = 0
    var tableWidth = 0
    /// The first tokens that are each their request's only one (``AttentionBatch/leadingDecodeRows``).
    var leadingDecodeRows = 0

    mutating func reset(requestCount: Int, tableWidth: Int) {
        tokens.removeAll(keepingCapacity: true)
        positions.removeAll(keepingCapacity: true)
        slots.removeAll(keepingCapacity: true)
        tokenRequests.removeAll(keepingCapacity: true)
        logitRows.removeAll(keepingCapacity: true)
        blockTables.removeAll(keepingCapacity: true)
        blockTables.append(contentsOf: repeatElement(0, count: requestCount * tableWidth))
        self.requestCount = requestCount
        self.tableWidth = tableWidth
        leadingDecodeRows = 0
    }

    /// Adds positions `start ..< start + count` of `sequence` as request row `row`.
    mutating func append(_ sequence: SequenceState, start: Int, count: Int, row: Int, blockSize: Int) {
        let blocks = sequence.blocks
        if count == 1 && leadingDecodeRows == tokens.count { leadingDecodeRows += 1 }
        for index in 0..<blocks.count { blockTables[row * tableWidth + index] = blocks[index] }
        for position in start..<(start + count) {
            tokens.append(sequence.tokenIDs[position])
            positions.append(Int32(position))
            slots.append(blocks[position / blockSize] * Int32(blockSize) + Int32(position % blockSize))
            tokenRequests.append(Int32(row))
        }
    }

    /// `count` padding tokens (id 0, position 0) as request row 0, all writing their keys and values
    /// into the first slot of `block`, with one logit row: an idle rank's step (one token), or a
    /// step as large as a real one, for sizing.
    mutating func appendPadding(count: Int = 1, block: Int32, blockSize: Int) {
        blockTables[0] = block
        tokens.append(contentsOf: repeatElement(0, count: count))
        positions.append(contentsOf: repeatElement(0, count: count))
        slots.append(contentsOf: repeatElement(block * Int32(blockSize), count: count))
        tokenRequests.append(contentsOf: repeatElement(0, count: count))
        logitRows.append(0)
    }

    /// Uploads everything; returns the batch description, the token ids and the logit rows.
    func upload(to backend: any Backend) throws -> (batch: AttentionBatch, tokenIDs: Tensor, logitRows: Tensor) {
        let batch = AttentionBatch(
            tokenCount: tokens.count,
            positions: try backend.makeScratch(positions, Shape(positions.count)),
            slotMapping: try backend.makeScratch(slots, Shape(slots.count)),
            tokenRequests: try backend.makeScratch(tokenRequests, Shape(tokenRequests.count)),
            blockTables: try backend.makeScratch(blockTables, Shape(requestCount, tableWidth)),
            leadingDecodeRows: leadingDecodeRows)
        return (batch, try backend.makeScratch(tokens, Shape(tokens.count)),
                try backend.makeScratch(logitRows, Shape(logitRows.count)))
    }
}
