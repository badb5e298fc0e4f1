import ComputeCUDA
import Foundation

/// `FLEXPERT_PROFILE_KERNELS=1`: GPU time per kernel, timed by events around every launch (each
/// replayed graph then waits for its end: for finding where time goes, not for serving or timing).
enum KernelProfile {
    static var isRequested: Bool { ProcessInfo.processInfo.environment["FLEXPERT_PROFILE_KERNELS"] == "1" }

    /// Prints what `cuda` has profiled so far, the 20 costliest kernels, to standard error.
    static func print(_ cuda: CUDABackend, title: String) {
        let entries = cuda.profiler?.entries.sorted { $0.milliseconds > $1.milliseconds } ?? []
        let total = entries.reduce(0) { $0 + $1.milliseconds }
        var text = "\(title) (\(String(format: "%.1f", total)) ms in all):\n| kernel | calls | µs per call | ms | share |\n|---|---:|---:|---:|---:|\n"
        for entry in entries.prefix(20) {
            text += "| \(entry.name) | \(entry.calls) | \(String(format: "%.1f", entry.milliseconds * 1000 / Double(max(entry.calls, 1)))) | "
                + "\(String(format: "%.1f", entry.milliseconds)) | \(String(format: "%.0f%%", entry.milliseconds / max(total, 1e-9) * 100)) |\n"
        }
        FileHandle.standardError.write(Data(text.utf8))
    }
}
