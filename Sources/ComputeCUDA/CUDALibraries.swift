#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// Where CUDABackend finds its libraries: the real ones (`dlopen` at run time, so the binary links
/// against no CUDA library and runs on machines without one), or a table of stand-ins resolved by
/// name, which is how the tests run the backend on the CUDA kernel emulator.
public enum CUDALibrarySource: Sendable {
    case system
    case table(@convention(c) (UnsafePointer<CChar>) -> UnsafeRawPointer?)
}

/// One CUDA library's symbols.
/// Unchecked Sendable: a dlopen handle and its resolver, never written after init.
final class DynamicLibrary: @unchecked Sendable {
    let path: String
    private let resolve: (String) -> UnsafeRawPointer?

    /// Tries each name, first as given (the loader's own search, `LD_LIBRARY_PATH` included), then
    /// in the usual CUDA folders and in Python's `nvidia/*/lib` folders; a table source resolves
    /// every name through the table instead.
    static func open(library: String, names: [String], from source: CUDALibrarySource) throws -> DynamicLibrary {
        if case .table(let lookup) = source {
            return DynamicLibrary(path: "\(library) (table)") { name in name.withCString { lookup($0) } }
        }
        var candidates = names
        for folder in searchFolders() {
            for name in names { candidates.append(folder + "/" + name) }
        }
        for candidate in candidates {
            if let handle = dlopen(candidate, RTLD_NOW | RTLD_LOCAL) {
                return DynamicLibrary(path: candidate) { name in UnsafeRawPointer(dlsym(handle, name)) }
            }
        }
        throw CUDAError.libraryNotFound(library: library, tried: names)
    }

    private init(path: String, resolve: @escaping (String) -> UnsafeRawPointer?) {
        self.path = path
        self.resolve = resolve
    }

    func symbol<Function>(_ name: String, as type: Function.Type) throws -> Function {
        guard let address = resolve(name) else { throw CUDAError.missingSymbol(name, library: path) }
        return unsafeBitCast(address, to: type)
    }

    private static func searchFolders() -> [String] {
        var folders = ["/usr/local/nvidia/lib64", "/usr/lib/x86_64-linux-gnu", "/usr/local/cuda/lib64", "/usr/local/cuda/lib",
                       "/usr/lib64", "/opt/cuda/lib64"]
        let fileManager = FileManager.default
        let pythonRoots = ["/usr/lib/python3/dist-packages", "/usr/local/lib", "/opt/torch/.venv/lib", "/usr/lib"]
        for root in pythonRoots {
            guard let entries = try? fileManager.contentsOfDirectory(atPath: root) else { continue }
            for entry in entries where entry.hasPrefix("python3") || root.hasSuffix("dist-packages") {
                let nvidia = root.hasSuffix("dist-packages") ? root + "/nvidia" : root + "/" + entry + "/site-packages/nvidia"
                guard let packages = try? fileManager.contentsOfDirectory(atPath: nvidia) else { continue }
                folders += packages.map { nvidia + "/" + $0 + "/lib" }
            }
        }
        return folders
    }
}

/// Errors of the CUDA backend, each naming what is missing or which call failed and why.
public enum CUDAError: Error, CustomStringConvertible {
    case libraryNotFound(library: String, tried: [String])
    case missingSymbol(String, library: String)
    case noDevice
    case driver(call: String, code: Int32, message: String)
    case compilation(code: Int32, log: String)
    case unsupportedDevice(String)
    case outOfMemory(requestedBytes: Int, freeBytes: Int, totalBytes: Int)
    case library(call: String, code: Int32)
    case nccl(call: String, code: Int32, message: String)
    case collectiveTimeout(String)
    case communicatorTimeout(call: String, timeout: Duration)

    public var description: String {
        switch self {
        case .libraryNotFound(let library, let tried):
            "CUDA is not available: \(library) not found (tried \(tried.joined(separator: ", ")) on LD_LIBRARY_PATH, the CUDA folders and Python's nvidia packages)"
        case .missingSymbol(let name, let library): "\(library) lacks \(name) (driver or toolkit too old?)"
        case .noDevice: "CUDA is not available: the driver reports no GPU"
        case .driver(let call, let code, let message): "\(call) failed: \(message) (CUresult \(code))"
        case .compilation(let code, let log): "NVRTC failed (\(code)):\n\(log)"
        case .unsupportedDevice(let reason): "unsupported GPU: \(reason)"
        case .outOfMemory(let bytes, let free, let total):
            "out of GPU memory allocating \(bytes) bytes (\(free >> 20) MiB of \(total >> 20) MiB free)"
        case .library(let call, let code): "\(call) failed with status \(code)"
        case .nccl(let call, let code, let message): "\(call) failed: \(message) (ncclResult \(code))"
        case .collectiveTimeout(let what): "\(what); the communicator was aborted"
        case .communicatorTimeout(let call, let timeout): "\(call) did not finish within \(timeout): a rank never joined (died?)"
        }
    }
}
