import Compute
import Foundation
import Synchronization

/// A rank started by ``onRanks(_:limit:_:)`` that had not finished by the limit.
public struct RankDidNotFinish: Error, CustomStringConvertible {
    public let rank: Int
    public var description: String { "rank \(rank) did not finish" }
}

/// Runs `body(rank)` for ranks 0 ..< `size`, each on a thread of its own (8 MiB of stack, for the
/// CUDA emulator's fibers), and returns each rank's result; a rank still running after `limit`
/// gives ``RankDidNotFinish``.
public func onRanks<Value: Sendable>(_ size: Int, limit: Duration = .seconds(240),
                                     _ body: @escaping @Sendable (_ rank: Int) throws -> Value) -> [Result<Value, any Error>] {
    let results = Mutex([Result<Value, any Error>?](repeating: nil, count: size))
    let done = DispatchGroup()
    for rank in 0..<size {
        done.enter()
        let thread = Thread {
            let result = Result { try body(rank) }
            results.withLock { $0[rank] = result }
            done.leave()
        }
        thread.stackSize = 8 << 20
        thread.start()
    }
    _ = done.wait(timeout: .now() + .milliseconds(Int(limit.milliseconds)))
    return results.withLock { finished in (0..<size).map { finished[$0] ?? .failure(RankDidNotFinish(rank: $0)) } }
}
