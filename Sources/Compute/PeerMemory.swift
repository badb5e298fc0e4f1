/// A device tensor named for other processes of the host (a CUDA IPC handle of its allocation and
/// where the tensor sits in it): what a rank sends a peer so that the peer copies the bytes itself,
/// device to device, with no host and no work on the sender's stream.
public struct SharedTensor: Sendable, Equatable {
    public let handle: [UInt8]
    public let byteOffset: Int
    public let byteCount: Int

    public init(handle: [UInt8], byteOffset: Int, byteCount: Int) {
        self.handle = handle
        self.byteOffset = byteOffset
        self.byteCount = byteCount
    }

    /// A message of several, in order: each a length-prefixed handle, its offset and its size.
    public static func encode(_ tensors: [SharedTensor]) -> [UInt8] {
        var bytes: [UInt8] = []
        func append(_ value: Int) { withUnsafeBytes(of: Int64(value).littleEndian) { bytes += $0 } }
        append(tensors.count)
        for tensor in tensors {
            append(tensor.handle.count)
            bytes += tensor.handle
            append(tensor.byteOffset)
            append(tensor.byteCount)
        }
        return bytes
    }

    public static func decode(_ bytes: [UInt8]) throws -> [SharedTensor] {
        var at = 0
        func integer() throws -> Int {
            guard at + 8 <= bytes.count else { throw ComputeError.shapeMismatch(operation: "SharedTensor.decode", detail: "cut off at \(at)") }
            var value: Int64 = 0
            for index in 0..<8 { value |= Int64(bytes[at + index]) << (8 * index) }
            at += 8
            guard value >= 0 && value <= Int64(Int32.max) * 1024 else {
                throw ComputeError.shapeMismatch(operation: "SharedTensor.decode", detail: "a field of \(value)")
            }
            return Int(value)
        }
        let count = try integer()
        var tensors: [SharedTensor] = []
        for _ in 0..<count {
            let length = try integer()
            guard length <= 256, at + length <= bytes.count else {
                throw ComputeError.shapeMismatch(operation: "SharedTensor.decode", detail: "a handle of \(length) bytes")
            }
            let handle = Array(bytes[at..<(at + length)])
            at += length
            tensors.append(SharedTensor(handle: handle, byteOffset: try integer(), byteCount: try integer()))
        }
        guard at == bytes.count else { throw ComputeError.shapeMismatch(operation: "SharedTensor.decode", detail: "\(bytes.count - at) bytes left over") }
        return tensors
    }
}

/// Device-to-device copies between processes of one host: a rank shares its tensors, a peer
/// copies from them into its own. Copies are ordered on the backend's stream of the rank that
/// makes them; the sharing rank does no work for them.
/// - Important: Owned by one thread at a time, like the backend it belongs to.
public protocol PeerMemory: AnyObject {
    /// Names `tensor` (device memory of this backend) for other processes.
    func share(_ tensor: Tensor) throws -> SharedTensor
    /// Copies `byteCount` bytes from `byteOffset` within another process's shared tensor into
    /// `target` (which is `byteCount` bytes), on this backend's stream.
    func copy(from source: SharedTensor, byteOffset: Int, into target: Tensor) throws
    /// Copies one of this backend's tensors into another of the same size, on its stream.
    func copy(_ source: Tensor, into target: Tensor) throws
    /// Waits for the copies made so far and unmaps the peers' memory they opened.
    func finish() throws
}
