import Compute
import Dispatch
import Elastic
import Messages
import Synchronization
import Transport

/// What reaches a rank's step loop from its other threads: the front end's messages (from the
/// connection's reader thread), the end of that connection, and the generation whose preparation
/// thread has finished. Those threads only post; the step loop alone takes. A recovery also
/// interrupts the group the loop serves in (the loop may wait in one of its collectives).
final class RankInbox: Sendable {
    private struct State {
        var messages: [EngineMessage] = []
        var frontEndGone: String?
        /// The preparations (by the loop's number) whose thread has finished.
        var settled: Set<Int> = []
        /// The group the loop serves in (and its device exchange's interruption), and the newest recovery posted.
        var group: StatelessGroup?
        var device: ExchangeInterruption?
        /// The store connection a recovery under way waits on (formation, the transport's join).
        var recoveryStore: StoreClient?
        var newestRecovery = -1
    }

    private let state = Mutex(State())
    /// Signalled after every post; a wait that finds nothing new goes back to waiting.
    private let posted = DispatchSemaphore(value: 0)

    func post(_ message: EngineMessage) {
        state.withLock { $0.messages.append(message) }
        posted.signal()
    }

    /// A recovery: posted, and the loop's group interrupted (a peer is lost: a collective would wait until its deadline).
    func postRecovery(_ command: ControlCommand) {
        let (group, device, store) = state.withLock { state in
            state.messages.append(.control(command))
            state.newestRecovery = max(state.newestRecovery, command.generation)
            return (state.group, state.device, state.recoveryStore)
        }
        group?.interrupt()
        device?.interrupt()
        // The recovery under way is superseded: its waits on the store end now.
        store?.close()
        posted.signal()
    }

    /// Whether a recovery newer than `generation` was posted (the one under way is superseded).
    func hasRecovery(newerThan generation: Int) -> Bool { state.withLock { $0.newestRecovery > generation } }

    /// The store connection of the recovery under way (`nil` once it is over).
    func recovering(through store: StoreClient?) { state.withLock { $0.recoveryStore = store } }

    /// The group (and device exchange) a recovery interrupts from now on.
    func interrupts(_ group: StatelessGroup?, device: ExchangeInterruption? = nil) {
        state.withLock { state in
            state.group = group
            state.device = device
        }
    }

    func frontEndEnded(_ reason: String) {
        state.withLock { $0.frontEndGone = reason }
        posted.signal()
    }

    func preparationSettled(_ id: Int) {
        state.withLock { _ = $0.settled.insert(id) }
        posted.signal()
    }

    /// Forgets a preparation the loop is done with.
    func forgetPreparation(_ id: Int) { state.withLock { _ = $0.settled.remove(id) } }

    /// Moves what arrived into `messages` (which the caller has emptied). When nothing did and
    /// the loop `sleeps`, first waits for a message, the end of the connection, or the settling
    /// of the preparation `awaited`. Returns why the connection ended, once it has.
    func take(into messages: inout [EngineMessage], sleeps: Bool, awaiting awaited: Int?) -> String? {
        while true {
            let (isReady, gone) = state.withLock { state in
                let isReady = !sleeps || !state.messages.isEmpty || state.frontEndGone != nil
                    || awaited.map { state.settled.contains($0) } == true
                if isReady { swap(&messages, &state.messages) }
                return (isReady, state.frontEndGone)
            }
            if isReady { return gone }
            posted.wait()
        }
    }
}
