import ArgumentParser
import BackendParity
import Compute
import ComputeCUDA
import Foundation

/// Every operator of the CUDA backend against the CPU backend on random inputs, as a table; the
/// exit status is non-zero when one is outside its tolerance. Runs where a GPU is; without one it
/// says what is missing.
struct CheckCUDACommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "check-cuda",
                                                    abstract: "Compare every CUDA operator with the CPU reference.")

    func run() throws {
        let parity = OperatorParity(backend: try CUDABackend.load())
        print("device: \(parity.backend.device)")
        try OperatorChecks(parity: parity, sizes: .full).runAll()
        print("| operator | max error / scale | tolerance | |")
        print("|---|---:|---:|---|")
        for result in parity.results {
            print("| \(result.name) | \(String(format: "%.2e", result.error)) | \(String(format: "%.0e", result.tolerance)) | \(result.passed ? "ok" : "FAIL") |")
        }
        let failed = parity.results.filter { !$0.passed }.count
        print("\(parity.results.count - failed) of \(parity.results.count) within tolerance")
        if failed > 0 { throw ExitCode(1) }
    }
}
