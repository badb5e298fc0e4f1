public import Jinja
public import OpenAIAPI
public import Tokenization

/// Turns a chat request into prompt text as vLLM does: the messages as vLLM hands them to the
/// template (text parts joined with newlines, a tool call's JSON arguments parsed into an object),
/// the tokenizer's special tokens, and the request's tools and `chat_template_kwargs`.
public struct ChatTemplating: Sendable {
    /// `--chat-template`, else the folder's template; `tool_use` when the config names one and tools are given.
    private let template: ChatTemplate?
    private let toolTemplate: ChatTemplate?
    /// Where the tokenizer's special tokens come from (`Value` is not `Sendable`, so the variables are made per render).
    private let configuration: TokenizerConfiguration?

    public init(configuration: TokenizerConfiguration, override: ChatTemplate? = nil) {
        template = override ?? configuration.template(withTools: false)
        toolTemplate = override ?? configuration.template(withTools: true)
        self.configuration = configuration
    }

    /// A template of one string, as `--chat-template` or a test gives it, with no special tokens.
    public init(template: ChatTemplate?) {
        self.template = template
        toolTemplate = template
        configuration = nil
    }

    /// Refuses a request's own `chat_template` unless the server trusts them (vLLM's `--trust-request-chat-template`).
    public func checkRequestTemplate(_ fields: ChatTemplateFields, trusted: Bool) throws {
        guard fields.chatTemplate != nil || fields.chatTemplateKwargs.contains(where: { $0.0 == "chat_template" }), !trusted else { return }
        throw APIError.invalid("Chat template is passed with request, but --trust-request-chat-template is not set. Refused request with untrusted chat template.",
                               param: "chat_template")
    }

    /// The prompt text; a 400 when the template refuses the conversation or fails on it.
    public func prompt(_ fields: ChatTemplateFields, now: Double? = nil) throws -> String {
        let chosen: ChatTemplate
        if let text = fields.chatTemplate {
            do {
                chosen = try ChatTemplate(source: text, origin: "the request's chat_template")
            } catch {
                throw APIError.invalid("\(error)", param: "chat_template")
            }
        } else if let found = fields.tools == nil ? template : toolTemplate {
            chosen = found
        } else {
            throw APIError.invalid("This model has no chat template; use /v1/completions, or start the server with --chat-template.",
                                   param: "messages")
        }
        // A template that never names the developer role gets developer messages as system ones, as vLLM gives them.
        let developerRole = chosen.mentions("developer") ? "developer" : "system"
        // An empty list reaches the template as a list, as transformers and vLLM pass it.
        let tools = fields.tools?.map(Self.value)
        let request = ChatTemplate.Request(
            messages: fields.messages.map { Self.templateMessage($0, developerRole: developerRole) }, tools: tools,
            documents: fields.documents?.map(Self.value), addsGenerationPrompt: fields.addGenerationPrompt,
            continuesFinalMessage: fields.continueFinalMessage, variables: fields.chatTemplateKwargs.map { ($0.0, Self.value($0.1)) })
        do {
            return try chosen.render(request, specialTokens: configuration?.templateVariables ?? [], now: now)
        } catch let error as ChatTemplate.RenderError {
            throw APIError.invalid(error.description, param: "messages")
        }
    }

    /// A message as vLLM passes it to a template that takes string content: null content is "",
    /// and an input `reasoning_content` is also given as `reasoning`.
    static func templateMessage(_ message: JSONValue, developerRole: String) -> Value {
        guard case .object(let members) = message else { return value(message) }
        var mapping = Mapping()
        for (key, field) in members {
            switch (key, field) {
            case ("role", .string("developer")):
                mapping[key] = .string(developerRole)
            case ("content", .null):
                mapping[key] = .string("")
            case ("reasoning_content", _):
                mapping[key] = value(field)
                if members.first(where: { $0.0 == "reasoning" }) == nil { mapping["reasoning"] = value(field) }
            case ("content", .array(let parts)):
                let texts = parts.compactMap { part -> String? in
                    guard case .object(let fields) = part, case .string(let text)? = fields.first(where: { $0.0 == "text" })?.1 else { return nil }
                    return text
                }
                mapping[key] = .string(texts.joined(separator: "\n"))
            case ("tool_calls", .array(let calls)):
                mapping[key] = .array(calls.map(templateToolCall))
            default:
                mapping[key] = value(field)
            }
        }
        return .object(mapping)
    }

    /// Tool-call arguments arrive as JSON text; templates expect the object (`{}` when empty).
    private static func templateToolCall(_ call: JSONValue) -> Value {
        guard case .object(let members) = call else { return value(call) }
        var mapping = Mapping()
        for (key, field) in members {
            if key == "function", case .object(let function) = field {
                var functionMapping = Mapping()
                for (name, part) in function {
                    if name == "arguments", case .string(let text) = part {
                        functionMapping[name] = text.isEmpty ? .object(Mapping()) : (JSON.parse(text) ?? .string(text))
                    } else {
                        functionMapping[name] = value(part)
                    }
                }
                if functionMapping["arguments"] == nil { functionMapping["arguments"] = .object(Mapping()) }
                mapping[key] = .object(functionMapping)
            } else {
                mapping[key] = value(field)
            }
        }
        return .object(mapping)
    }

    static func value(_ json: JSONValue) -> Value {
        switch json {
        case .null: .none
        case .bool(let flag): .bool(flag)
        case .int(let number): .int(number)
        case .number(let number): .double(number)
        case .string(let text): .string(text)
        case .array(let items): .array(items.map(value))
        case .object(let members): .object(Mapping(members.map { ($0.0, value($0.1)) }))
        }
    }
}
