/// Everything that can be wrong with a checkpoint folder, each naming the file and the tensor
/// or field, so that a user can tell which download or conversion went wrong.
public enum CheckpointError: Error, CustomStringConvertible, Equatable {
    case missingFile(path: String)
    case unreadableFile(path: String, reason: String)
    case badHeader(file: String, reason: String)
    case truncated(file: String, tensor: String, needsBytes: Int, fileBytes: Int)
    case unsupportedDType(file: String, tensor: String, dtype: String)
    case missingTensor(name: String, searched: String)
    case shapeMismatch(name: String, file: String, expected: [Int], found: [Int])
    case badConfiguration(file: String, field: String, reason: String)
    case unknownArchitecture(file: String, name: String, supported: [String])

    public var description: String {
        switch self {
        case .missingFile(let path): "missing file: \(path)"
        case .unreadableFile(let path, let reason): "cannot read \(path): \(reason)"
        case .badHeader(let file, let reason): "\(file): bad safetensors header: \(reason)"
        case .truncated(let file, let tensor, let needsBytes, let fileBytes):
            "\(file): tensor '\(tensor)' needs bytes up to \(needsBytes) but the file has only \(fileBytes) (truncated download?)"
        case .unsupportedDType(let file, let tensor, let dtype):
            "\(file): tensor '\(tensor)' has unsupported dtype \(dtype) (supported: F32, BF16, F16)"
        case .missingTensor(let name, let searched): "missing tensor '\(name)' (searched \(searched))"
        case .shapeMismatch(let name, let file, let expected, let found):
            "\(file): tensor '\(name)' has shape \(found), expected \(expected)"
        case .badConfiguration(let file, let field, let reason): "\(file): field '\(field)': \(reason)"
        case .unknownArchitecture(let file, let name, let supported):
            "\(file): unknown architecture '\(name)' (supported: \(supported.joined(separator: ", ")))"
        }
    }
}
