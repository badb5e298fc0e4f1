/// The fields of a chat request (or of `/tokenize` with messages) that reach the chat template, read
/// from the request's own JSON so that key order and `1` versus `1.0` survive into `tojson`.
public struct ChatTemplateFields: Sendable {
    /// Each an object with a `role`; `content` a string, null, or a list of text parts.
    public let messages: [JSONValue]
    public let tools: [JSONValue]?
    public let documents: [JSONValue]?
    public let toolChoice: ToolChoice
    public let chatTemplate: String?
    public let chatTemplateKwargs: [(String, JSONValue)]
    public let addGenerationPrompt: Bool
    public let continueFinalMessage: Bool
    /// `parallel_tool_calls` (default true): false keeps only the first call.
    public let parallelToolCalls: Bool

    public enum ToolChoice: Sendable, Equatable {
        case none, auto, required
        case function(String)
    }

    /// Reads and checks the fields of `body`; a bad one is a 400 naming it.
    public init(_ body: JSONValue, addsGenerationPromptByDefault: Bool) throws {
        guard case .object(let members) = body else { throw APIError.invalid("The request body must be a JSON object.") }
        func field(_ name: String) -> JSONValue? {
            let value = members.first { $0.0 == name }?.1
            return value == .null ? nil : value
        }
        guard case .array(let messages)? = field("messages") else {
            throw APIError.invalid("'messages' must be a list of messages.", param: "messages")
        }
        guard !messages.isEmpty else { throw APIError.invalid("'messages' must not be empty.", param: "messages") }
        for (index, message) in messages.enumerated() { try Self.check(message, at: "messages[\(index)]") }
        self.messages = messages

        if let tools = field("tools") {
            guard case .array(let list) = tools else { throw APIError.invalid("'tools' must be a list of tools.", param: "tools") }
            for (index, tool) in list.enumerated() {
                guard case .object(let toolMembers) = tool, toolMembers.first(where: { $0.0 == "type" })?.1 == "function",
                      case .object(let function)? = toolMembers.first(where: { $0.0 == "function" })?.1,
                      case .string(let name)? = function.first(where: { $0.0 == "name" })?.1, !name.isEmpty else {
                    throw APIError.invalid("Each tool must be {\"type\": \"function\", \"function\": {\"name\": …}}.", param: "tools[\(index)]")
                }
            }
            self.tools = list
        } else {
            tools = nil
        }
        if let documents = field("documents") {
            guard case .array(let list) = documents else { throw APIError.invalid("'documents' must be a list.", param: "documents") }
            self.documents = list
        } else {
            documents = nil
        }

        let correctUsage = " Correct usage: `{\"type\": \"function\", \"function\": {\"name\": \"my_function\"}}`"
        var choice: ToolChoice
        switch field("tool_choice") {
        case nil: choice = tools?.isEmpty == false ? .auto : .none
        case .string("none")?: choice = .none
        case .string("auto")?: choice = .auto
        case .string("required")?: choice = .required
        case .object(let named)?:
            guard case .object(let function)? = named.first(where: { $0.0 == "function" })?.1 else {
                throw APIError.invalid("Invalid value for `function` in `tool_choice`!" + correctUsage, param: "tool_choice")
            }
            guard case .string(let name)? = function.first(where: { $0.0 == "name" })?.1 else {
                throw APIError.invalid("Expected field `name` in `function` in `tool_choice`!" + correctUsage, param: "tool_choice")
            }
            choice = .function(name)
        case let other?:
            throw APIError.invalid("Invalid value for `tool_choice`: \(other.serialized())! Only named tools, \"none\", \"auto\" or \"required\" are supported.",
                                   param: "tool_choice")
        }
        // vLLM's reading: an empty list of tools turns "auto" and "required" into "none".
        if tools?.isEmpty == true {
            if case .function = choice {} else { choice = .none }
        }
        switch choice {
        case .required, .function:
            guard let tools, !tools.isEmpty else { throw APIError.invalid("When using `tool_choice`, `tools` must be set.", param: "tool_choice") }
            if case .function(let name) = choice, !tools.contains(where: { Self.functionName($0) == name }) {
                throw APIError.invalid("The tool `\(name)` specified in `tool_choice` does not match any of the specified `tools`",
                                       param: "tool_choice")
            }
        case .none, .auto:
            break
        }
        toolChoice = choice

        switch field("chat_template") {
        case nil: chatTemplate = nil
        case .string(let text)?: chatTemplate = text
        default: throw APIError.invalid("'chat_template' must be a string.", param: "chat_template")
        }
        switch field("chat_template_kwargs") {
        case nil: chatTemplateKwargs = []
        case .object(let pairs)?: chatTemplateKwargs = pairs
        default: throw APIError.invalid("'chat_template_kwargs' must be an object.", param: "chat_template_kwargs")
        }
        func flag(_ name: String, _ fallback: Bool) throws -> Bool {
            switch field(name) {
            case nil: return fallback
            case .bool(let value)?: return value
            default: throw APIError.invalid("'\(name)' must be a boolean.", param: name)
            }
        }
        continueFinalMessage = try flag("continue_final_message", false)
        parallelToolCalls = try flag("parallel_tool_calls", true)
        addGenerationPrompt = try flag("add_generation_prompt", addsGenerationPromptByDefault && !continueFinalMessage)
        if continueFinalMessage && addGenerationPrompt {
            throw APIError.invalid("Cannot set both `continue_final_message` and `add_generation_prompt` to True.",
                                   param: "continue_final_message")
        }
    }

    /// The name of an OpenAI tool (`{"type": "function", "function": {"name": …}}`).
    public static func functionName(_ tool: JSONValue) -> String? {
        guard case .object(let members) = tool, case .object(let function)? = members.first(where: { $0.0 == "function" })?.1,
              case .string(let name)? = function.first(where: { $0.0 == "name" })?.1 else { return nil }
        return name
    }

    private static func check(_ message: JSONValue, at path: String) throws {
        guard case .object(let members) = message else { throw APIError.invalid("'\(path)' must be an object.", param: path) }
        guard case .string(let role)? = members.first(where: { $0.0 == "role" })?.1 else {
            throw APIError.invalid("'\(path).role' is a required string.", param: "\(path).role")
        }
        // Any role reaches the template, as in vLLM: Llama 3's `ipython` and templates' own roles
        // are roles OpenAI does not list.
        guard !role.isEmpty else { throw APIError.invalid("'\(path).role' must not be empty.", param: "\(path).role") }
        switch members.first(where: { $0.0 == "content" })?.1 {
        case nil, .null?, .string?: break
        case .array(let parts)?:
            for (index, part) in parts.enumerated() {
                guard case .object(let fields) = part, fields.first(where: { $0.0 == "type" })?.1 == "text",
                      case .string? = fields.first(where: { $0.0 == "text" })?.1 else {
                    throw APIError.invalid("Only text content parts ({\"type\": \"text\", \"text\": …}) are supported.",
                                           param: "\(path).content[\(index)]")
                }
            }
        default:
            throw APIError.invalid("'\(path).content' must be a string, null or a list of text parts.", param: "\(path).content")
        }
        if let calls = members.first(where: { $0.0 == "tool_calls" })?.1, calls != .null {
            guard case .array(let list) = calls else { throw APIError.invalid("'\(path).tool_calls' must be a list.", param: "\(path).tool_calls") }
            for (index, call) in list.enumerated() {
                guard case .object(let fields) = call, case .object(let function)? = fields.first(where: { $0.0 == "function" })?.1,
                      case .string? = function.first(where: { $0.0 == "name" })?.1 else {
                    throw APIError.invalid("A tool call must have a function with a name.", param: "\(path).tool_calls[\(index)]")
                }
                if case .string(let arguments)? = function.first(where: { $0.0 == "arguments" })?.1, !arguments.isEmpty,
                   (try? StrictJSON.parse(Array(arguments.utf8))) == nil {
                    throw APIError.invalid("Tool call arguments must be JSON.", param: "\(path).tool_calls[\(index)].function.arguments")
                }
            }
        }
    }
}
