import Jinja

/// Finds the blocks of tool calls (`<tool_call>…</tool_call>`) in text that arrives in pieces,
/// each as soon as its closing marker arrives. Each byte is searched once, so a long output costs
/// its length, not its length squared. Text between blocks is not the answer's and is dropped; a
/// `stop` marker (DeepSeek's end of all calls) ends the blocks and hands back what follows.
struct BlockScanner {
    let open: [UInt8]
    let close: [UInt8]
    let stop: [UInt8]?
    private var bytes: [UInt8] = []
    /// Whether `bytes` is inside a block (it starts with the block's body).
    private var inside = false
    /// How far `bytes` has been searched for the marker now looked for.
    private var searched = 0

    init(open: String, close: String, stop: String? = nil) {
        self.open = Array(open.utf8)
        self.close = Array(close.utf8)
        self.stop = stop.map { Array($0.utf8) }
    }

    enum Event {
        /// A whole block's body, between its markers.
        case body(String)
        /// The stop marker came; what followed it in the text appended so far.
        case stopped(after: String)
    }

    mutating func append(_ text: String) { bytes += text.utf8 }

    /// The next block completed by the text appended so far, or the stop; nil until more arrives.
    /// One at a time, so that a caller that rejects a block still has the text after it.
    mutating func next() -> Event? {
        while true {
            if inside {
                guard let range = bytes.firstRange(of: close, from: max(0, searched - close.count + 1)) else {
                    searched = bytes.count
                    return nil
                }
                let body = String(decoding: bytes[..<range.lowerBound], as: UTF8.self)
                bytes.removeFirst(range.upperBound)
                inside = false
                searched = 0
                return .body(body)
            }
            let from = max(0, searched - max(open.count, stop?.count ?? 0) + 1)
            let opening = bytes.firstRange(of: open, from: from)
            if let stop, let range = bytes.firstRange(of: stop, from: from), opening.map({ range.lowerBound < $0.lowerBound }) ?? true {
                let after = String(decoding: bytes[range.upperBound...], as: UTF8.self)
                bytes = []
                return .stopped(after: after)
            }
            guard let opening else {
                // Only a tail that could begin a marker is worth keeping.
                let keep = max(open.count, stop?.count ?? 0) - 1
                if bytes.count > keep { bytes.removeFirst(bytes.count - keep) }
                searched = bytes.count
                return nil
            }
            bytes.removeFirst(opening.upperBound)
            inside = true
            searched = 0
        }
    }

    /// The body of a block that was opened and never closed, at the end of the text.
    mutating func finish() -> String? {
        defer { bytes = [] }
        return inside ? String(decoding: bytes, as: UTF8.self) : nil
    }

    /// What is held after the last block: the rest of the text when a block fails to parse.
    var remainder: String { String(decoding: bytes, as: UTF8.self) }
}
