import Foundation
import FrontEnd
import ServiceLifecycle

/// The first step of a graceful shutdown, run before the HTTP server's own: closes admission
/// (new requests get 503), waits up to `timeout` for the requests in flight, then stops the
/// rest so that their connections end, and returns, letting the server close.
///
/// A response that still cannot end (a client that stopped reading) would hold the server
/// forever, so a watchdog exits the process `forceExitGrace` after the timeout unless the
/// server has closed by then (``serverClosed``).
struct ShutdownDrain: Service {
    let frontEnd: FrontEnd
    let timeout: Duration
    var forceExitGrace: Duration = .seconds(10)
    /// Set by the server once its service group returned: the watchdog then does nothing.
    let serverClosed = SetOnceFlag()

    func run() async throws {
        // Cancellation (another service failed) is not a shutdown to drain.
        do { try await gracefulShutdown() } catch { return }
        let started = ContinuousClock.now
        let message = "flexpert: shutting down: \(frontEnd.submissionsInFlight) requests in flight, up to \(timeout) to finish\n"
        FileHandle.standardError.write(Data(message.utf8))
        frontEnd.closeAdmission()
        let watchdog = Thread { [timeout, forceExitGrace, serverClosed] in
            Thread.sleep(forTimeInterval: (timeout + forceExitGrace) / .seconds(1))
            guard !serverClosed.isSet else { return }
            FileHandle.standardError.write(Data("flexpert: the HTTP server did not close in time; exiting\n".utf8))
            // Without exit handlers: other threads are still running.
            _exit(1)
        }
        watchdog.name = "flexpert-shutdown-watchdog"
        watchdog.start()
        while frontEnd.submissionsInFlight > 0 && ContinuousClock.now - started < timeout {
            guard (try? await Task.sleep(for: .milliseconds(20))) != nil else { break }
        }
        if frontEnd.submissionsInFlight > 0 {
            frontEnd.stopSubmissionsInFlight()
            let stopped = ContinuousClock.now
            while frontEnd.submissionsInFlight > 0 && ContinuousClock.now - stopped < .seconds(5) {
                guard (try? await Task.sleep(for: .milliseconds(20))) != nil else { break }
            }
        }
    }
}
