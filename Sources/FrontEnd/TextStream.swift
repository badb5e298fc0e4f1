public import Tokenization

/// Turns one choice's generated tokens into text as they arrive: bytes that end mid-character
/// wait for the next token, stop strings end the text where they begin, and the last
/// (longest stop string − 1) bytes are held back so that a stop string is never half streamed.
public struct TextStream {
    private let tokenizer: Tokenizer
    private let keepsSpecialTokens: Bool
    private let hiddenTokenIDs: [Int]
    private let stopStrings: [[UInt8]]
    private let holdBack: Int
    private var pending: [UInt8] = []
    /// Finished text as UTF-8: complete characters, cut at a stop string when one was found.
    private var bytes: [UInt8] = []
    private var emittedBytes = 0
    private var checkedBytes = 0
    private(set) var isStopped = false
    private var startedText = false

    /// Special tokens are left out of the text, unless `keepsSpecialTokens` (a tool parser reads its
    /// markers in them); `hiddenTokenIDs` (the end-of-sequence tokens) are left out either way.
    public init(tokenizer: Tokenizer, stopStrings: [String], keepsSpecialTokens: Bool = false, hiddenTokenIDs: [Int] = []) {
        self.tokenizer = tokenizer
        self.keepsSpecialTokens = keepsSpecialTokens
        self.hiddenTokenIDs = hiddenTokenIDs
        self.stopStrings = stopStrings.map { Array($0.utf8) }
        holdBack = max(0, (self.stopStrings.map(\.count).max() ?? 0) - 1)
    }

    /// Adds a token; returns the text that may be sent now.
    public mutating func append(_ tokenID: Int) -> String {
        guard !isStopped, !hiddenTokenIDs.contains(tokenID) else { return "" }
        let piece = (try? tokenizer.decodeBytes([tokenID], skipsSpecialTokens: !keepsSpecialTokens, continuesText: startedText,
                                                keepsRawBytes: true)) ?? []
        // A skipped special token does not start the text: the decoder's start rules wait for the first one that shows.
        if !piece.isEmpty || !tokenizer.isSpecial(tokenID) { startedText = true }
        pending += piece
        let complete = Self.completePrefixLength(pending)
        if complete > 0 {
            appendRepaired(pending[..<complete])
            pending.removeFirst(complete)
        }
        findStop()
        return take(upTo: isStopped ? bytes.count : bytes.count - holdBack)
    }

    /// The text not yet sent, at the end of the choice.
    public mutating func finish() -> String {
        if !isStopped && !pending.isEmpty {
            appendRepaired(pending[...])
            pending.removeAll()
            findStop()
        }
        return take(upTo: bytes.count)
    }

    /// The whole text so far.
    public var text: String { String(decoding: bytes, as: UTF8.self) }

    /// Invalid sequences become U+FFFD here, once, so that every later cut lands on a character boundary.
    private mutating func appendRepaired(_ piece: ArraySlice<UInt8>) {
        if String(validating: piece, as: UTF8.self) != nil {
            bytes += piece
        } else {
            bytes += String(decoding: piece, as: UTF8.self).utf8
        }
    }

    private mutating func findStop() {
        guard !stopStrings.isEmpty, bytes.count > checkedBytes else { return }
        var earliest: Int?
        for stop in stopStrings where stop.count <= bytes.count {
            var start = max(0, checkedBytes - stop.count + 1)
            while start + stop.count <= bytes.count {
                if bytes[start] == stop[0] && bytes[start..<(start + stop.count)].elementsEqual(stop) {
                    earliest = min(earliest ?? start, start)
                    break
                }
                start += 1
            }
        }
        checkedBytes = bytes.count
        if let earliest {
            bytes.removeSubrange(earliest...)
            isStopped = true
        }
    }

    private mutating func take(upTo limit: Int) -> String {
        var end = min(max(limit, emittedBytes), bytes.count)
        while end > emittedBytes && end < bytes.count && UTF8.isContinuation(bytes[end]) { end -= 1 }
        guard end > emittedBytes else { return "" }
        let piece = String(decoding: bytes[emittedBytes..<end], as: UTF8.self)
        emittedBytes = end
        return piece
    }

    /// Bytes up to the start of a trailing sequence that may still be completed by later bytes.
    public static func completePrefixLength(_ bytes: [UInt8]) -> Int {
        var index = bytes.count
        var back = 0
        while index > 0 && back < 4 {
            index -= 1
            back += 1
            let byte = bytes[index]
            if !UTF8.isContinuation(byte) {
                let needed = byte < 0x80 ? 1 : byte >= 0xF0 ? 4 : byte >= 0xE0 ? 3 : byte >= 0xC0 ? 2 : 1
                return back < needed ? index : bytes.count
            }
        }
        return bytes.count
    }
}
