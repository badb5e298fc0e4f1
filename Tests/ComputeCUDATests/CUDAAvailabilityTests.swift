import ComputeCUDA
import Testing

/// The CPU-side behaviour of the CUDA backend; its kernels are checked on a GPU machine by
/// `Scripts/check-cuda-parity.py`.
@Suite struct CUDAAvailabilityTests {
    @Test(.enabled(if: !CUDABackend.isAvailable))
    func withoutAGPULoadingSaysWhatIsMissing() {
        do {
            _ = try CUDABackend.load()
            Issue.record("loading CUDA succeeded on a machine reported as having none")
        } catch let error as CUDAError {
            let text = error.description
            #expect(text.hasPrefix("CUDA is not available"), "\(text)")
            #expect(text.contains("libcuda") || text.contains("no GPU"), "\(text)")
        } catch {
            Issue.record("unexpected error type: \(error)")
        }
    }
}
