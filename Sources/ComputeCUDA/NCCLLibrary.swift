internal import CUDAShim

/// The slice of NCCL Flexpert uses (communicators and point-to-point sends grouped into
/// all-to-alls), resolved from `libnccl` at run time like every CUDA library.
/// Unchecked Sendable: C function pointers, resolved once and never written again.
final class NCCLLibrary: @unchecked Sendable {
    typealias Result = Int32

    let library: DynamicLibrary
    let ncclGetVersion: @convention(c) (UnsafeMutablePointer<Int32>) -> Result
    let ncclGetUniqueId: @convention(c) (UnsafeMutableRawPointer) -> Result
    /// Takes the unique id by value: called through `flexpert_nccl_comm_init_rank`.
    let ncclCommInitRank: UnsafeRawPointer
    let ncclCommDestroy: @convention(c) (OpaquePointer?) -> Result
    let ncclCommAbort: @convention(c) (OpaquePointer?) -> Result
    let ncclCommGetAsyncError: @convention(c) (OpaquePointer?, UnsafeMutablePointer<Result>) -> Result
    let ncclGetErrorString: @convention(c) (Result) -> UnsafePointer<CChar>?
    let ncclGroupStart: @convention(c) () -> Result
    let ncclGroupEnd: @convention(c) () -> Result
    let ncclSend: @convention(c) (UnsafeRawPointer?, Int, Int32, Int32, OpaquePointer?, OpaquePointer?) -> Result
    let ncclRecv: @convention(c) (UnsafeMutableRawPointer?, Int, Int32, Int32, OpaquePointer?, OpaquePointer?) -> Result

    static let uniqueIDBytes = Int(FLEXPERT_NCCL_UNIQUE_ID_BYTES)
    /// ncclInt8: rows move as bytes, whatever their element type.
    static let bytes: Int32 = 0
    static let inProgress: Result = 7

    init(source: CUDALibrarySource = .system) throws {
        library = try DynamicLibrary.open(library: "NCCL (libnccl)", names: ["libnccl.so.2", "libnccl.so"], from: source)
        ncclGetVersion = try library.symbol("ncclGetVersion", as: type(of: ncclGetVersion))
        ncclGetUniqueId = try library.symbol("ncclGetUniqueId", as: type(of: ncclGetUniqueId))
        ncclCommInitRank = try library.symbol("ncclCommInitRank", as: UnsafeRawPointer.self)
        ncclCommDestroy = try library.symbol("ncclCommDestroy", as: type(of: ncclCommDestroy))
        ncclCommAbort = try library.symbol("ncclCommAbort", as: type(of: ncclCommAbort))
        ncclCommGetAsyncError = try library.symbol("ncclCommGetAsyncError", as: type(of: ncclCommGetAsyncError))
        ncclGetErrorString = try library.symbol("ncclGetErrorString", as: type(of: ncclGetErrorString))
        ncclGroupStart = try library.symbol("ncclGroupStart", as: type(of: ncclGroupStart))
        ncclGroupEnd = try library.symbol("ncclGroupEnd", as: type(of: ncclGroupEnd))
        ncclSend = try library.symbol("ncclSend", as: type(of: ncclSend))
        ncclRecv = try library.symbol("ncclRecv", as: type(of: ncclRecv))
    }

    func commInitRank(_ communicator: UnsafeMutablePointer<OpaquePointer?>, ranks: Int, uniqueID: [UInt8], rank: Int) -> Result {
        uniqueID.withUnsafeBytes { id in
            communicator.withMemoryRebound(to: UnsafeMutableRawPointer?.self, capacity: 1) {
                flexpert_nccl_comm_init_rank(ncclCommInitRank, $0, Int32(ranks), id.baseAddress, Int32(rank))
            }
        }
    }

    /// Major.minor.patch of the library (NCCL encodes it as major·10000 + minor·100 + patch).
    var version: String {
        var code: Int32 = 0
        guard ncclGetVersion(&code) == 0 else { return "unknown" }
        return "\(code / 10000).\(code / 100 % 100).\(code % 100)"
    }

    func check(_ result: Result, _ call: @autoclosure () -> String) throws {
        guard result != 0 else { return }
        throw CUDAError.nccl(call: call(), code: result, message: ncclGetErrorString(result).map { String(cString: $0) } ?? "unknown error")
    }
}
