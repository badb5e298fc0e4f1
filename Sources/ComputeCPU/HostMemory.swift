#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Compute

/// Aligned host allocations, so SIMD loads never straddle cache lines needlessly.
enum HostMemory {
    static let alignment = 64

    static func allocate(byteCount: Int) -> TensorStorage {
        let size = max(byteCount, 1)
        let pointer = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: alignment)
        pointer.initializeMemory(as: UInt8.self, repeating: 0, count: size)
        let address = UInt(bitPattern: pointer)
        return TensorStorage(address: address, byteCount: byteCount) {
            UnsafeMutableRawPointer(bitPattern: address)?.deallocate()
        }
    }
}

extension Tensor {
    @inline(__always) var floats: UnsafeMutablePointer<Float> {
        UnsafeMutablePointer<Float>(bitPattern: address)!
    }

    @inline(__always) var integers: UnsafeMutablePointer<Int32> {
        UnsafeMutablePointer<Int32>(bitPattern: address)!
    }
}

/// The step's scratch memory: a bump allocator over one block that is reset each step. When a
/// step needs more than the block holds, the overflow goes to extra blocks, and the next reset
/// replaces all of them with one block big enough for that step, so steady-state steps allocate
/// nothing.
final class ScratchArena {
    private var block: TensorStorage
    private var used = 0
    private var overflow: [TensorStorage] = []
    private var overflowBytes = 0

    init(initialBytes: Int) {
        block = HostMemory.allocate(byteCount: initialBytes)
    }

    func reset() {
        if !overflow.isEmpty {
            block = HostMemory.allocate(byteCount: (block.byteCount + overflowBytes) * 3 / 2)
            overflow.removeAll()
            overflowBytes = 0
        }
        used = 0
    }

    /// Tensors made after `mark()` die at `release(to:)`; overflow blocks live until the reset.
    var mark: Int { used }

    func release(to mark: Int) { used = min(used, mark) }

    func make(_ shape: Shape, _ dtype: DType) -> Tensor {
        let bytes = (shape.elementCount * dtype.byteCount + HostMemory.alignment - 1) / HostMemory.alignment * HostMemory.alignment
        if used + bytes <= block.byteCount {
            let tensor = Tensor(storage: block, byteOffset: used, shape: shape, dtype: dtype)
            used += bytes
            return tensor
        }
        let storage = HostMemory.allocate(byteCount: bytes)
        overflow.append(storage)
        overflowBytes += bytes
        return Tensor(storage: storage, shape: shape, dtype: dtype)
    }
}
