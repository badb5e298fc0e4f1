@testable import Engine
import Foundation
import Messages
import Testing

/// The rank loop's inbox: posts from other threads wake a sleeping loop, and a loop with work
/// takes what is there without waiting.
struct RankInboxTests {
    @Test func aLoopWithWorkTakesWithoutWaiting() {
        let inbox = RankInbox()
        var messages: [EngineMessage] = []
        #expect(inbox.take(into: &messages, sleeps: false, awaiting: nil) == nil)
        #expect(messages.isEmpty)
        inbox.post(.abort(RequestID(7)))
        #expect(inbox.take(into: &messages, sleeps: true, awaiting: nil) == nil)
        #expect(messages.count == 1)
    }

    @Test func aSleepingLoopWakesForAPostTheEndOrItsPreparation() {
        let inbox = RankInbox()
        var messages: [EngineMessage] = []
        let poster = Thread {
            Thread.sleep(forTimeInterval: 0.05)
            inbox.post(.wake(round: 3))
        }
        poster.start()
        #expect(inbox.take(into: &messages, sleeps: true, awaiting: nil) == nil)
        guard case .wake(3)? = messages.first else {
            Issue.record("took \(messages)")
            return
        }
        messages.removeAll()

        // A preparation that settles wakes the loop only if it is the one awaited.
        inbox.preparationSettled(1)
        let settler = Thread {
            Thread.sleep(forTimeInterval: 0.05)
            inbox.preparationSettled(2)
        }
        settler.start()
        #expect(inbox.take(into: &messages, sleeps: true, awaiting: 2) == nil)
        #expect(messages.isEmpty)

        let ender = Thread {
            Thread.sleep(forTimeInterval: 0.05)
            inbox.frontEndEnded("closed")
        }
        ender.start()
        inbox.forgetPreparation(2)
        #expect(inbox.take(into: &messages, sleeps: true, awaiting: 2) == "closed")
    }
}
