/// Why a template could not be parsed or rendered. Every case names the line, so that a template
/// the interpreter cannot run says which construct and where.
public enum TemplateError: Error, CustomStringConvertible, Equatable {
    /// The source is not valid Jinja.
    case syntax(String, line: Int)
    /// Valid Jinja that this interpreter does not implement.
    case unsupported(String, line: Int)
    /// A failure while rendering (a type error, an undefined member, a refused operation).
    case runtime(String, line: Int)
    /// The template called `raise_exception(message)`: the conversation is one it refuses.
    case raised(String)

    public var description: String {
        switch self {
        case .syntax(let message, let line): "template syntax error at line \(line): \(message)"
        case .unsupported(let construct, let line): "template line \(line): \(construct) is not supported"
        case .runtime(let message, let line): "template error at line \(line): \(message)"
        case .raised(let message): message
        }
    }
}

/// A render-time failure before its line is known; the interpreter adds the line.
struct EvaluationError: Error {
    let message: String

    init(_ message: String) { self.message = message }
}
