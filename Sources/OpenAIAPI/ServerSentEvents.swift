/// Splits a server-sent-event stream into the `data` of each event, as OpenAI clients read it:
/// events end at a blank line, `:` lines are comments, several `data:` lines join with newlines.
public struct ServerSentEventParser: Sendable {
    private var line: [UInt8] = []
    private var data: [String] = []

    public init() {}

    /// Feeds bytes; returns the events they complete.
    public mutating func feed(_ bytes: some Sequence<UInt8>) -> [String] {
        var events: [String] = []
        for byte in bytes {
            guard byte == UInt8(ascii: "\n") else {
                line.append(byte)
                continue
            }
            if line.last == UInt8(ascii: "\r") { line.removeLast() }
            if line.isEmpty {
                if !data.isEmpty { events.append(data.joined(separator: "\n")) }
                data.removeAll()
            } else if line.starts(with: Array("data:".utf8)) {
                var value = line.dropFirst(5)
                if value.first == UInt8(ascii: " ") { value = value.dropFirst() }
                data.append(String(decoding: value, as: UTF8.self))
            }
            line.removeAll(keepingCapacity: true)
        }
        return events
    }
}

/// The server's side of the same framing: each event one `data:` line and a blank line, and
/// `[DONE]` after the last, as OpenAI's streaming responses end.
public enum ServerSentEvents {
    public static func event(_ data: String) -> String { "data: \(data)\n\n" }

    public static let done = event("[DONE]")
}
