import Coordination
import Foundation
import Synchronization

/// The engine processes `serve` starts on this machine: `flexpert engine` children that join the
/// coordinator. Stopped by closing their front-end connections (they exit by themselves), then
/// SIGTERM and SIGKILL for any that linger.
final class LocalRanks: RankProcesses {
    /// Foundation's `Process` is not Sendable: the processes are reached only under this lock.
    private let processes: Mutex<[Process]>

    /// - Parameter generation: newcomers of that reconfiguration (`nil`: the first ranks).
    init(count: Int, coordinator: String, token: String, generation: Int? = nil) throws {
        let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        processes = Mutex(try (0..<count).map { _ in
            let process = Process()
            process.executableURL = executable
            process.arguments = ["engine", "--coordinator", coordinator] + (generation.map { ["--generation", "\($0)"] } ?? [])
            // The token goes by environment, not argv, so that `ps` does not show it.
            process.environment = ProcessInfo.processInfo.environment.merging(["FLEXPERT_JOIN_TOKEN": token]) { $1 }
            try process.run()
            return process
        })
    }

    /// Why the ranks cannot all come up anymore: a process that already exited.
    var problem: String? {
        processes.withLock { processes in
            for (index, process) in processes.enumerated() where !process.isRunning {
                return "engine process \(index) exited with status \(process.terminationStatus) before joining"
            }
            return nil
        }
    }

    func stop(grace: TimeInterval) {
        func anyRunning() -> Bool { processes.withLock { $0.contains(where: \.isRunning) } }
        let deadline = Date().addingTimeInterval(grace)
        while anyRunning() && Date() < deadline { usleep(20_000) }
        processes.withLock { for process in $0 where process.isRunning { process.terminate() } }
        let hard = Date().addingTimeInterval(2)
        while anyRunning() && Date() < hard { usleep(20_000) }
        processes.withLock { processes in
            for process in processes where process.isRunning { kill(process.processIdentifier, SIGKILL) }
            for process in processes { process.waitUntilExit() }
        }
    }
}
