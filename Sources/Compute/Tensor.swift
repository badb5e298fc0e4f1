/// Memory that tensors view. The address is a host pointer on the CPU backend and a device
/// pointer on GPU backends; only the backend that made it interprets it.
/// Unchecked Sendable: a raw host or device address, never written after init; the backend that made it owns the memory.
public final class TensorStorage: @unchecked Sendable {
    public let address: UInt
    public let byteCount: Int
    private let release: (() -> Void)?

    /// - Parameter release: called once when the storage is no longer referenced; `nil` when
    ///   something else (a memory map held by `keepAlive`, an arena) owns the memory.
    public init(address: UInt, byteCount: Int, release: (() -> Void)?) {
        self.address = address
        self.byteCount = byteCount
        self.release = release
    }

    deinit { release?() }
}

/// A typed view of part of a ``TensorStorage``: a handle, not the data.
///
/// Tensors are row-major and contiguous. Views made by ``rows(_:)`` and ``reshaped(_:)`` share
/// their storage, so they cost no copy and no allocation.
public struct Tensor: Sendable, CustomStringConvertible {
    public let storage: TensorStorage
    public let byteOffset: Int
    public let shape: Shape
    public let dtype: DType

    public init(storage: TensorStorage, byteOffset: Int = 0, shape: Shape, dtype: DType) {
        precondition(byteOffset + shape.elementCount * dtype.byteCount <= storage.byteCount,
                     "tensor \(shape) \(dtype) at offset \(byteOffset) overruns its storage of \(storage.byteCount) bytes")
        self.storage = storage
        self.byteOffset = byteOffset
        self.shape = shape
        self.dtype = dtype
    }

    public var address: UInt { storage.address + UInt(byteOffset) }
    public var elementCount: Int { shape.elementCount }
    public var byteCount: Int { elementCount * dtype.byteCount }

    /// Rows `range` of the outermost dimension.
    public func rows(_ range: Range<Int>) -> Tensor {
        precondition(range.lowerBound >= 0 && range.upperBound <= shape[0], "rows \(range) out of \(shape)")
        return Tensor(storage: storage, byteOffset: byteOffset + range.lowerBound * shape.rowWidth * dtype.byteCount,
                      shape: shape.replacingFirst(with: range.count), dtype: dtype)
    }

    /// The same elements under another shape with the same element count.
    public func reshaped(_ newShape: Shape) -> Tensor {
        precondition(newShape.elementCount == shape.elementCount, "cannot reshape \(shape) to \(newShape)")
        return Tensor(storage: storage, byteOffset: byteOffset, shape: newShape, dtype: dtype)
    }

    public var description: String { "Tensor(\(shape), \(dtype))" }
}

/// Host bytes of a tensor as a checkpoint holds them, before a backend takes them in.
/// Unchecked Sendable: a raw view of bytes that `owner` keeps alive, never written through.
public struct HostTensor: @unchecked Sendable {
    public let bytes: UnsafeRawBufferPointer
    public let shape: Shape
    public let dtype: DType
    /// Keeps `bytes` valid (a memory map, an array's storage).
    public let owner: AnyObject?

    public init(bytes: UnsafeRawBufferPointer, shape: Shape, dtype: DType, owner: AnyObject?) {
        precondition(bytes.count == shape.elementCount * dtype.byteCount,
                     "\(bytes.count) bytes do not hold \(shape) of \(dtype)")
        self.bytes = bytes
        self.shape = shape
        self.dtype = dtype
        self.owner = owner
    }
}
