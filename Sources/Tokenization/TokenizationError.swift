/// Problems with tokenizer files or with what is asked of a tokenizer.
public enum TokenizationError: Error, CustomStringConvertible, Equatable {
    case missingFile(path: String)
    case badFile(file: String, reason: String)
    case unsupported(file: String, component: String, detail: String)
    case badPattern(pattern: String, reason: String)
    case unknownTokenID(Int, vocabularySize: Int)
    case noChatTemplate(folder: String)

    public var description: String {
        switch self {
        case .missingFile(let path): "missing file: \(path)"
        case .badFile(let file, let reason): "\(file): \(reason)"
        case .unsupported(let file, let component, let detail): "\(file): unsupported \(component): \(detail)"
        case .badPattern(let pattern, let reason): "pre-tokenizer pattern \(pattern): \(reason)"
        case .unknownTokenID(let id, let size): "token id \(id) is outside the vocabulary of \(size) tokens"
        case .noChatTemplate(let folder): "\(folder): no chat template in tokenizer_config.json or chat_template.jinja"
        }
    }
}
