import Foundation

/// Compiles CUDA C sources to CUBIN for one GPU architecture with NVRTC, caching the result on
/// disk under a hash of source, options, architecture and NVRTC version, so only the first start
/// on a machine pays for compilation.
struct NVRTCCompiler {
    let nvrtc: NVRTCLibrary
    let architecture: String          // e.g. "sm_90"
    let cacheFolder: String

    init(nvrtc: NVRTCLibrary, architecture: String) {
        self.nvrtc = nvrtc
        self.architecture = architecture
        let base = ProcessInfo.processInfo.environment["FLEXPERT_CACHE"]
            ?? (ProcessInfo.processInfo.environment["HOME"].map { $0 + "/.cache/flexpert" } ?? NSTemporaryDirectory() + "flexpert")
        cacheFolder = base + "/kernels"
    }

    var version: String {
        var major: Int32 = 0, minor: Int32 = 0
        _ = nvrtc.nvrtcVersion(&major, &minor)
        return "\(major).\(minor)"
    }

    func compile(source: String, name: String) throws -> [UInt8] {
        let options = ["--gpu-architecture=\(architecture)", "--std=c++17", "-default-device"]
        let key = Self.hash(source + "\u{0}" + options.joined(separator: " ") + "\u{0}" + version)
        let cachePath = cacheFolder + "/\(name)-\(architecture)-\(String(key, radix: 16)).cubin"
        if let cached = FileManager.default.contents(atPath: cachePath), !cached.isEmpty {
            return Array(cached)
        }
        var program: OpaquePointer?
        let created = source.withCString { nvrtc.nvrtcCreateProgram(&program, $0, name, 0, nil, nil) }
        guard created == 0 else { throw CUDAError.compilation(code: created, log: "nvrtcCreateProgram") }
        defer { _ = nvrtc.nvrtcDestroyProgram(&program) }
        let cOptions = options.map { strdup($0) }
        defer { cOptions.forEach { free($0) } }
        let compiled = cOptions.map { UnsafePointer($0) }.withUnsafeBufferPointer {
            nvrtc.nvrtcCompileProgram(program, Int32(options.count), $0.baseAddress)
        }
        guard compiled == 0 else { throw CUDAError.compilation(code: compiled, log: log(program)) }
        var size = 0
        _ = nvrtc.nvrtcGetCUBINSize(program, &size)
        var cubin = [UInt8](repeating: 0, count: size)
        let fetched = cubin.withUnsafeMutableBytes { nvrtc.nvrtcGetCUBIN(program, $0.baseAddress!.assumingMemoryBound(to: CChar.self)) }
        guard fetched == 0 else { throw CUDAError.compilation(code: fetched, log: "nvrtcGetCUBIN") }
        try? FileManager.default.createDirectory(atPath: cacheFolder, withIntermediateDirectories: true)
        let temporary = cachePath + ".\(getpid()).tmp"
        if FileManager.default.createFile(atPath: temporary, contents: Data(cubin)) {
            _ = rename(temporary, cachePath)
        }
        return cubin
    }

    private func log(_ program: OpaquePointer?) -> String {
        var size = 0
        _ = nvrtc.nvrtcGetProgramLogSize(program, &size)
        var text = [CChar](repeating: 0, count: max(size, 1))
        _ = nvrtc.nvrtcGetProgramLog(program, &text)
        return cText(text)
    }

    /// FNV-1a, 64 bits: stable across runs and processes, unlike `Hasher`.
    static func hash(_ text: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash &*= 0x100_0000_01b3
        }
        return hash
    }
}
