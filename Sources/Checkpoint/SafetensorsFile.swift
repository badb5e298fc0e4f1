#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
public import Compute

/// One `.safetensors` file, memory-mapped: tensors are views of the mapping, read by the
/// kernel on demand, never copied whole into memory.
///
/// Format: an 8-byte little-endian header length `n`, `n` bytes of JSON mapping each tensor
/// name to `{dtype, shape, data_offsets: [begin, end]}` (offsets relative to the byte after the
/// header), then the data.
/// Unchecked Sendable: a read-only memory map of the file (a raw pointer).
public final class SafetensorsFile: @unchecked Sendable {
    public struct Entry: Sendable {
        public let dtype: DType
        public let shape: Shape
        public let byteRange: Range<Int>   // relative to the start of the file
    }

    public let path: String
    public let entries: [String: Entry]
    private let base: UnsafeRawPointer
    private let mappedBytes: Int

    public init(path: String) throws {
        self.path = path
        let name = (path as NSString).lastPathComponent
        let descriptor = open(path, O_RDONLY)
        guard descriptor >= 0 else {
            if errno == ENOENT { throw CheckpointError.missingFile(path: path) }
            throw CheckpointError.unreadableFile(path: path, reason: String(cString: strerror(errno)))
        }
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else {
            throw CheckpointError.unreadableFile(path: path, reason: String(cString: strerror(errno)))
        }
        let fileBytes = Int(status.st_size)
        guard fileBytes >= 8 else {
            throw CheckpointError.badHeader(file: name, reason: "file is \(fileBytes) bytes, shorter than the 8-byte header length")
        }
        guard let mapping = mmap(nil, fileBytes, PROT_READ, MAP_PRIVATE, descriptor, 0), mapping != MAP_FAILED else {
            throw CheckpointError.unreadableFile(path: path, reason: "mmap: " + String(cString: strerror(errno)))
        }
        base = UnsafeRawPointer(mapping)
        mappedBytes = fileBytes
        do {
            entries = try Self.parseHeader(base: base, fileBytes: fileBytes, name: name)
        } catch {
            munmap(mapping, fileBytes)
            throw error
        }
    }

    deinit { munmap(UnsafeMutableRawPointer(mutating: base), mappedBytes) }

    public var tensorNames: Dictionary<String, Entry>.Keys { entries.keys }

    /// The tensor's bytes as a view of the mapping; the returned value keeps the file mapped.
    public func tensor(named name: String) -> HostTensor? {
        guard let entry = entries[name] else { return nil }
        let bytes = UnsafeRawBufferPointer(start: base + entry.byteRange.lowerBound, count: entry.byteRange.count)
        return HostTensor(bytes: bytes, shape: entry.shape, dtype: entry.dtype, owner: self)
    }

    private static func parseHeader(base: UnsafeRawPointer, fileBytes: Int, name: String) throws -> [String: Entry] {
        let headerBytes = Int(UInt64(littleEndian: base.loadUnaligned(as: UInt64.self)))
        guard headerBytes > 0, headerBytes <= fileBytes - 8 else {
            throw CheckpointError.badHeader(file: name, reason: "header length \(headerBytes) does not fit in a file of \(fileBytes) bytes")
        }
        let json = Data(bytes: base + 8, count: headerBytes)
        guard let header = try? JSONSerialization.jsonObject(with: json) as? [String: Any] else {
            throw CheckpointError.badHeader(file: name, reason: "header is not a JSON object")
        }
        let dataStart = 8 + headerBytes
        var entries: [String: Entry] = [:]
        for (tensorName, value) in header where tensorName != "__metadata__" {
            guard let fields = value as? [String: Any], let dtypeName = fields["dtype"] as? String,
                  let shapeValues = fields["shape"] as? [Int], let offsets = fields["data_offsets"] as? [Int],
                  offsets.count == 2, offsets[0] >= 0, offsets[1] >= offsets[0] else {
                throw CheckpointError.badHeader(file: name, reason: "entry '\(tensorName)' lacks dtype, shape or data_offsets")
            }
            let dtype: DType
            switch dtypeName {
            case "F32": dtype = .float32
            case "BF16": dtype = .bfloat16
            case "F16": dtype = .float16
            case "I32": dtype = .int32
            case "F8_E4M3": dtype = .float8E4M3
            case "U8": dtype = .uint8
            default: throw CheckpointError.unsupportedDType(file: name, tensor: tensorName, dtype: dtypeName)
            }
            guard shapeValues.count <= 4, shapeValues.allSatisfy({ $0 >= 0 }) else {
                throw CheckpointError.badHeader(file: name, reason: "entry '\(tensorName)' has shape \(shapeValues)")
            }
            let shape = Shape(shapeValues)
            guard offsets[1] - offsets[0] == shape.elementCount * dtype.byteCount else {
                throw CheckpointError.badHeader(
                    file: name, reason: "entry '\(tensorName)' spans \(offsets[1] - offsets[0]) bytes but \(shapeValues) of \(dtypeName) needs \(shape.elementCount * dtype.byteCount)")
            }
            let range = (dataStart + offsets[0])..<(dataStart + offsets[1])
            guard range.upperBound <= fileBytes else {
                throw CheckpointError.truncated(file: name, tensor: tensorName, needsBytes: range.upperBound, fileBytes: fileBytes)
            }
            entries[tensorName] = Entry(dtype: dtype, shape: shape, byteRange: range)
        }
        return entries
    }
}
