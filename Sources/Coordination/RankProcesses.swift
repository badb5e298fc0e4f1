public import Foundation

/// Processes started for newcomers of a scale-up (the caller's `flexpert engine` children).
public protocol RankProcesses: AnyObject, Sendable {
    /// Why they cannot all run anymore (one exited), or `nil`.
    var problem: String? { get }
    /// Stops them: they exit by themselves when their connections close; those that linger are killed.
    func stop(grace: TimeInterval)
}
