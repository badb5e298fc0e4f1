/// The slice of cuBLAS Flexpert uses (dense bf16 matmuls on tensor cores), resolved from
/// `libcublas` at run time like every CUDA library.
/// Unchecked Sendable: C function pointers, resolved once and never written again.
final class CUBLASLibrary: @unchecked Sendable {
    typealias Status = Int32

    let library: DynamicLibrary
    let cublasCreate: @convention(c) (UnsafeMutablePointer<OpaquePointer?>) -> Status
    let cublasDestroy: @convention(c) (OpaquePointer?) -> Status
    let cublasSetStream: @convention(c) (OpaquePointer?, OpaquePointer?) -> Status
    let cublasSetWorkspace: @convention(c) (OpaquePointer?, UInt64, Int) -> Status
    let cublasGemmEx: @convention(c) (OpaquePointer?, Int32, Int32, Int32, Int32, Int32, UnsafeRawPointer, UInt64, Int32, Int32,
                                      UInt64, Int32, Int32, UnsafeRawPointer, UInt64, Int32, Int32, Int32, Int32) -> Status
    let cublasGemmStridedBatchedEx: @convention(c) (OpaquePointer?, Int32, Int32, Int32, Int32, Int32, UnsafeRawPointer,
                                                    UInt64, Int32, Int32, Int64, UInt64, Int32, Int32, Int64, UnsafeRawPointer,
                                                    UInt64, Int32, Int32, Int64, Int32, Int32, Int32) -> Status

    init(source: CUDALibrarySource = .system) throws {
        library = try DynamicLibrary.open(library: "cuBLAS (libcublas)",
                                          names: ["libcublas.so", "libcublas.so.13", "libcublas.so.12", "libcublas.so.11"], from: source)
        cublasCreate = try library.symbol("cublasCreate_v2", as: type(of: cublasCreate))
        cublasDestroy = try library.symbol("cublasDestroy_v2", as: type(of: cublasDestroy))
        cublasSetStream = try library.symbol("cublasSetStream_v2", as: type(of: cublasSetStream))
        cublasSetWorkspace = try library.symbol("cublasSetWorkspace_v2", as: type(of: cublasSetWorkspace))
        cublasGemmEx = try library.symbol("cublasGemmEx", as: type(of: cublasGemmEx))
        cublasGemmStridedBatchedEx = try library.symbol("cublasGemmStridedBatchedEx", as: type(of: cublasGemmStridedBatchedEx))
    }

    func check(_ status: Status, _ call: @autoclosure () -> String) throws {
        guard status != 0 else { return }
        throw CUDAError.library(call: call(), code: status)
    }
}

/// cuBLAS's enumerations, as its headers number them.
enum CUBLASConstant {
    static let operationNone: Int32 = 0
    static let operationTranspose: Int32 = 1
    static let float32: Int32 = 0       // CUDA_R_32F
    static let bfloat16: Int32 = 14     // CUDA_R_16BF
    static let compute32F: Int32 = 68   // CUBLAS_COMPUTE_32F
    static let defaultAlgorithm: Int32 = -1
}
