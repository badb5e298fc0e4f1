/// Copies between host memory and tensors, in the order they are made; ``synchronize()`` waits
/// for them. A ``Backend`` is one, on its step loop's queue; a ``TransferStream`` is another.
public protocol TensorTransfers: AnyObject {
    /// Copies `source` into `tensor` (converting its element type where they differ).
    func upload(_ source: HostTensor, into tensor: Tensor) throws
    /// The tensor's bytes as stored.
    func downloadBytes(_ tensor: Tensor, into bytes: UnsafeMutableRawBufferPointer) throws
    func synchronize() throws
}

extension TensorTransfers {
    /// Copies `values` into `tensor`, which they fill exactly, of their own dtype.
    public func upload<Element: HostElement>(_ values: ArraySlice<Element>, into tensor: Tensor) throws {
        precondition(Element.dtype == tensor.dtype && values.count == tensor.elementCount, "\(values.count) \(Element.dtype) values into \(tensor)")
        try values.withUnsafeBytes { try upload(HostTensor(bytes: $0, shape: tensor.shape, dtype: tensor.dtype, owner: nil), into: tensor) }
    }

    public func upload<Element: HostElement>(_ values: [Element], into tensor: Tensor) throws { try upload(values[...], into: tensor) }
}

/// A backend's device reached from one thread that is not its step loop's: a reconfiguration's
/// preparation reads and writes weights with it while the step loop keeps serving. Its copies
/// run on a queue of their own, and it shares none of the backend's state (arenas, scratch,
/// graphs): it cannot allocate, and the loop's stream never sees its work.
///
/// - Important: Used by one thread at a time, which calls ``attachCurrentThread()`` first; the
///   tensors it copies must outlive its copies.
public protocol TransferStream: TensorTransfers, Sendable {
    func attachCurrentThread() throws
    /// Peer memory whose copies run on this stream, where the device has it (CUDA IPC).
    func makePeerMemory() -> (any PeerMemory)?
}
