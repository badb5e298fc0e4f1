/// A compiled kernel and the buffer its arguments are packed into.
///
/// `cuLaunchKernel` takes an array of pointers to argument values; the values live in one
/// fixed buffer reused by every launch, so launching allocates nothing.
final class Kernel {
    let function: OpaquePointer?
    let name: String
    private let driver: CUDADriver
    /// The backend's stream: every launch is ordered on it (and captured from it into graphs).
    private let stream: OpaquePointer?
    /// Set while a profile is being taken (`CUDABackend.profiler`).
    var profiler: KernelProfiler?
    private let storage = UnsafeMutableRawPointer.allocate(byteCount: 512, alignment: 16)
    private let pointers = UnsafeMutablePointer<UnsafeMutableRawPointer?>.allocate(capacity: 32)
    private var used = 0
    private var count = 0

    init(function: OpaquePointer?, name: String, driver: CUDADriver, stream: OpaquePointer?) {
        self.function = function
        self.name = name
        self.driver = driver
        self.stream = stream
    }

    deinit {
        storage.deallocate()
        pointers.deallocate()
    }

    /// Kernel argument values: device pointers, 32-bit integers, 64-bit integers and floats.
    enum Argument {
        case pointer(UInt64)
        case int32(Int32)
        case int64(Int64)
        case float(Float)
    }

    func launch(grid: (UInt32, UInt32, UInt32), block: UInt32, sharedBytes: UInt32 = 0, _ arguments: Argument...) throws {
        used = 0
        count = 0
        for argument in arguments {
            switch argument {
            case .pointer(let value): append(value)
            case .int32(let value): append(value)
            case .int64(let value): append(value)
            case .float(let value): append(value)
            }
        }
        if let profiler {
            try profiler.time(name, stream: stream) { try launchPacked(grid: grid, block: block, sharedBytes: sharedBytes) }
        } else {
            try launchPacked(grid: grid, block: block, sharedBytes: sharedBytes)
        }
    }

    private func launchPacked(grid: (UInt32, UInt32, UInt32), block: UInt32, sharedBytes: UInt32) throws {
        try driver.check(driver.cuLaunchKernel(function, grid.0, grid.1, grid.2, block, 1, 1, sharedBytes, stream, pointers, nil),
                         "cuLaunchKernel(\(name))")
    }

    private func append<Value>(_ value: Value) {
        let alignment = MemoryLayout<Value>.alignment
        used = (used + alignment - 1) / alignment * alignment
        precondition(used + MemoryLayout<Value>.size <= 512 && count < 32, "too many kernel arguments for \(name)")
        (storage + used).storeBytes(of: value, as: Value.self)
        pointers[count] = storage + used
        used += MemoryLayout<Value>.size
        count += 1
    }
}
