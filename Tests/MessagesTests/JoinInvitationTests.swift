import Elastic
import Messages
import Testing

/// The newcomers' invitation carries the prepare command itself: the size of a scale-up reaches
/// old and new ranks in that one message.
struct JoinInvitationTests {
    @Test func theInvitationIsThePrepareAndTheFirstNewRank() throws {
        let prepare = ControlCommand(id: 12, generation: 3, action: .prepare(size: 4))
        let invitation = try JoinInvitation(prepare: prepare, firstNewRank: 2)
        let decoded = try JoinInvitation(decoding: invitation.encoded())
        #expect(decoded == invitation)
        #expect(decoded.size == 4 && decoded.generation == 3 && decoded.prepare.id == 12 && decoded.firstNewRank == 2)
    }

    @Test func anInvitationWithoutAPrepareOrPastItsSizeIsRefused() throws {
        #expect(throws: MalformedMessage.self) {
            try JoinInvitation(prepare: ControlCommand(id: 1, generation: 1, action: .commit), firstNewRank: 1)
        }
        #expect(throws: MalformedMessage.self) {
            try JoinInvitation(prepare: ControlCommand(id: 1, generation: 1, action: .prepare(size: 2)), firstNewRank: 2)
        }
        let valid = try JoinInvitation(prepare: ControlCommand(id: 1, generation: 1, action: .prepare(size: 2)), firstNewRank: 1).encoded()
        #expect(throws: MalformedMessage.self) { try JoinInvitation(decoding: Array(valid.dropLast())) }
        #expect(throws: MalformedMessage.self) { try JoinInvitation(decoding: valid + [0]) }
    }
}
