public import Tokenization

/// Turns one choice's generated tokens into text as they arrive: bytes that end mid-character
/// wait for the next token, stop strings end the text where they begin, and the last
/// (longest stop string − 1) bytes are held back so that a stop string is never half streamed.
public struct TextStream {
    private let tokenizer: Tokenizer
    private let stopStrings: [[UInt8]]
    private let holdBack: Int
    private var pending: [UInt8] = []
    /// Finished text as UTF-8: complete characters, cut at a stop string when one was found.
    private var bytes: [UInt8] = []
    private var emittedBytes = 0
    private var checkedBytes = 0
    private(set) var isStopped = false

    public init(tokenizer: Tokenizer, stopStrings: [String]) {
        self.tokenizer = tokenizer
        self.stopStrings = stopStrings.map { Array($0.utf8) }
        holdBack = max(0, (self.stopStrings.map(\.count).max() ?? 0) - 1)
    }

    /// Adds a token; returns the text that may be sent now.
    public mutating func append(_ tokenID: Int) -> String {
        guard !isStopped else { return "" }
        pending += (try? tokenizer.decodeBytes([tokenID], skipsSpecialTokens: true)) ?? []
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
