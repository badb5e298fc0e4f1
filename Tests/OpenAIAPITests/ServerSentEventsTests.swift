import OpenAIAPI
import Testing

/// The server's framing and the clients' parser are one format: what one writes the other reads,
/// however the bytes are split on the way.
struct ServerSentEventsTests {
    @Test func whatTheServerWritesTheParserReadsInAnyPieces() {
        let stream = Array((ServerSentEvents.event(#"{"a":1}"#) + ": a comment\n\n" + ServerSentEvents.event("two")
                            + ServerSentEvents.done).utf8)
        for pieceSize in [1, 3, 7, stream.count] {
            var parser = ServerSentEventParser()
            var events: [String] = []
            for start in stride(from: 0, to: stream.count, by: pieceSize) {
                events += parser.feed(stream[start..<min(start + pieceSize, stream.count)])
            }
            #expect(events == [#"{"a":1}"#, "two", "[DONE]"], "pieces of \(pieceSize) bytes")
        }
        var parser = ServerSentEventParser()
        #expect(parser.feed(Array("data: one\r\ndata: two\r\n\r\n".utf8)) == ["one\ntwo"])
    }
}
