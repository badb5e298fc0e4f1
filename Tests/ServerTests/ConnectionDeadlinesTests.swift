@testable import Server
import Testing

/// The deadline of one HTTP connection, event by event.
struct ConnectionDeadlinesTests {
    let timeouts = HTTPTimeouts(headerRead: .seconds(10), bodyRead: .seconds(20), keepAlive: .seconds(30))
    let start = ContinuousClock.now

    func at(_ seconds: Int) -> ContinuousClock.Instant { start + .seconds(seconds) }

    @Test func eachPartOfARequestHasItsOwnDeadlineAndAResponseHasNone() {
        var deadlines = ConnectionDeadlines(timeouts: timeouts, now: at(0))
        #expect(deadlines.deadline == at(30), "idle since the connection opened")
        deadlines.bytesArrived(at: at(5))
        #expect(deadlines.deadline == at(15), "the head must be complete 10 s after its first byte")
        deadlines.bytesArrived(at: at(14))
        #expect(deadlines.deadline == at(15), "more bytes of the head do not extend it")
        deadlines.headRead(at: at(14))
        #expect(deadlines.deadline == at(34), "then 20 s for the body")
        deadlines.bytesArrived(at: at(20))
        #expect(deadlines.deadline == at(34))
        deadlines.bodyEnded(at: at(21))
        #expect(deadlines.deadline == nil, "no deadline while the response is produced, however long")
        #expect(!deadlines.hasExpired(at: at(10_000)))
        deadlines.responseEnded(at: at(500))
        #expect(deadlines.deadline == at(530), "kept alive 30 s after the response")
        #expect(deadlines.hasExpired(at: at(530)) && !deadlines.hasExpired(at: at(529)))
    }

    @Test func aPipelinedRequestIsTimedWhileTheFirstIsAnswered() {
        var deadlines = ConnectionDeadlines(timeouts: timeouts, now: at(0))
        deadlines.bytesArrived(at: at(0))
        deadlines.headRead(at: at(0))
        deadlines.bodyEnded(at: at(0))
        deadlines.bytesArrived(at: at(1))
        deadlines.headRead(at: at(1))
        deadlines.bodyEnded(at: at(1))
        #expect(deadlines.deadline == nil)
        deadlines.responseEnded(at: at(50))
        #expect(deadlines.deadline == nil, "the second response is still due")
        deadlines.responseEnded(at: at(60))
        #expect(deadlines.deadline == at(90))
    }

    @Test func aResponseSentBeforeTheBodyEndedLeavesTheBodyDeadline() {
        var deadlines = ConnectionDeadlines(timeouts: timeouts, now: at(0))
        deadlines.bytesArrived(at: at(0))
        deadlines.headRead(at: at(1))
        deadlines.responseEnded(at: at(2))
        #expect(deadlines.deadline == at(21), "a 413 or 401 answered early: the rest of the body still has its deadline")
        deadlines.bodyEnded(at: at(3))
        #expect(deadlines.deadline == at(33))
    }

    @Test func strayBytesDuringAResponseWaitForItsEnd() {
        var deadlines = ConnectionDeadlines(timeouts: timeouts, now: at(0))
        deadlines.bytesArrived(at: at(0))
        deadlines.headRead(at: at(0))
        deadlines.bodyEnded(at: at(0))
        deadlines.bytesArrived(at: at(1))
        #expect(deadlines.deadline == nil, "a trailing CRLF or a slow next head does not cut the generation")
        #expect(!deadlines.hasExpired(at: at(1_000)))
        deadlines.responseEnded(at: at(1_000))
        #expect(deadlines.deadline == at(1_010), "the next head's deadline starts when the response ended")
    }
}
