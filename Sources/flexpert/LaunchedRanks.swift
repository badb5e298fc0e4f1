import Coordination
import Elastic
import Foundation
import Synchronization

/// The ranks a scale-up adds, started by whatever runs the cluster (`--elastic-ep-launcher CMD`):
/// CMD runs under `/bin/sh -c` once per new rank, with `FLEXPERT_COORDINATOR` (the store's
/// HOST:PORT), `FLEXPERT_JOIN_TOKEN`, `FLEXPERT_RANK` (the new rank's index) and
/// `FLEXPERT_GENERATION` (the reconfiguration it joins) in its environment, and starts
/// `flexpert engine --coordinator "$FLEXPERT_COORDINATOR" --generation "$FLEXPERT_GENERATION"`
/// where it chooses (a pod, a Slurm job, a machine over ssh). A launcher may return at once (it
/// submitted the rank) or run the rank itself; one that exits with a failure fails the scale.
/// The ranks stop by themselves when their connections close; a launcher still running after
/// the grace is terminated (and killed 2 s later).
final class LaunchedRanks: RankProcesses {
    /// Foundation's `Process` is not Sendable: the launchers are reached only under this lock.
    private let launchers: Mutex<[(rank: RankID, process: Process)]>

    init(command: String, ranks: Range<RankID>, generation: Int, coordinator: String, token: String) throws {
        launchers = Mutex(try ranks.map { rank in
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            process.arguments = ["-c", command]
            process.environment = ProcessInfo.processInfo.environment.merging([
                "FLEXPERT_COORDINATOR": coordinator, "FLEXPERT_JOIN_TOKEN": token, "FLEXPERT_RANK": "\(rank.index)",
                "FLEXPERT_GENERATION": "\(generation)",
            ]) { $1 }
            try process.run()
            return (rank, process)
        })
    }

    var problem: String? {
        launchers.withLock { launchers in
            for (rank, process) in launchers where !process.isRunning && process.terminationStatus != 0 {
                return "the launcher of rank \(rank) exited with status \(process.terminationStatus)"
            }
            return nil
        }
    }

    func stop(grace: TimeInterval) {
        func anyRunning() -> Bool { launchers.withLock { $0.contains { $0.process.isRunning } } }
        let deadline = Date().addingTimeInterval(grace)
        while anyRunning() && Date() < deadline { usleep(20_000) }
        launchers.withLock { launchers in for (_, process) in launchers where process.isRunning { process.terminate() } }
        let hard = Date().addingTimeInterval(2)
        while anyRunning() && Date() < hard { usleep(20_000) }
        launchers.withLock { launchers in
            for (_, process) in launchers where process.isRunning { kill(process.processIdentifier, SIGKILL) }
            for (_, process) in launchers { process.waitUntilExit() }
        }
    }
}
