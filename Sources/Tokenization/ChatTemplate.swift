import Foundation
public import Jinja

/// A model's chat template, interpreted as transformers' `apply_chat_template` interprets it.
public struct ChatTemplate: Sendable {
    private let template: Template
    private let source: String

    /// `origin` names where the text came from (`tokenizer_config.json`, a path) in a syntax error.
    public init(source: String, origin: String) throws {
        do {
            template = try Template(source)
        } catch let error as TemplateError {
            throw TokenizationError.badFile(file: origin, reason: error.description)
        }
        self.source = source
    }

    /// vLLM's `--chat-template` value: a file, or, when no such file exists and the value looks like
    /// a template (braces or a newline), the template itself.
    public init(argument: String) throws {
        if FileManager.default.fileExists(atPath: argument) {
            guard let text = try? String(contentsOfFile: argument, encoding: .utf8) else {
                throw TokenizationError.badFile(file: argument, reason: "not readable as UTF-8 text")
            }
            try self.init(source: text, origin: argument)
        } else if argument.contains(where: { "{}\n".contains($0) }) {
            try self.init(source: argument, origin: "--chat-template")
        } else {
            throw TokenizationError.missingFile(path: argument)
        }
    }

    /// Whether the template's text holds `word` (vLLM asks it of the developer role).
    public func mentions(_ word: String) -> Bool { source.contains(word) }

    /// What a render is asked for, as `apply_chat_template`'s arguments.
    public struct Request {
        public var messages: [Value]
        public var tools: [Value]?
        public var documents: [Value]?
        public var addsGenerationPrompt: Bool
        public var continuesFinalMessage: Bool
        /// Extra template variables (`chat_template_kwargs`), after the special tokens so they win.
        public var variables: [(String, Value)]

        public init(messages: [Value], tools: [Value]? = nil, documents: [Value]? = nil, addsGenerationPrompt: Bool,
                    continuesFinalMessage: Bool = false, variables: [(String, Value)] = []) {
            self.messages = messages
            self.tools = tools
            self.documents = documents
            self.addsGenerationPrompt = addsGenerationPrompt
            self.continuesFinalMessage = continuesFinalMessage
            self.variables = variables
        }
    }

    /// Why a conversation could not be rendered: the template refused it (`raise_exception`), or
    /// failed on it, or the request's options contradict each other.
    public struct RenderError: Error, CustomStringConvertible {
        public let description: String
    }

    /// The prompt text. `specialTokens` are the tokenizer's (`bos_token`, `eos_token`, …), passed
    /// as transformers passes its `special_tokens_map`; `now` fixes `strftime_now`'s clock.
    ///
    /// As transformers 5 does: a message's keys whose value is null are dropped, and its reasoning
    /// (`reasoning_content`, `thinking` or `reasoning`) is given as both `reasoning_content` and
    /// `thinking` (GPT-OSS's templates read the latter).
    public func render(_ request: Request, specialTokens: [(String, Value)], now: Double? = nil) throws -> String {
        if request.continuesFinalMessage && request.addsGenerationPrompt {
            throw RenderError(description: "continue_final_message and add_generation_prompt are not compatible. Use continue_final_message when you want the model to continue the final message, and add_generation_prompt when you want to add a header that will prompt it to generate a new assistant message instead.")
        }
        var messages = request.messages.map(Self.normalized)
        var final: String?
        if request.continuesFinalMessage { final = try markFinalMessage(&messages) }
        var variables: [(String, Value)] = [
            ("messages", .array(messages)),
            ("tools", request.tools.map { .array($0) } ?? .none),
            ("documents", request.documents.map { .array($0) } ?? .none),
            ("add_generation_prompt", .bool(request.addsGenerationPrompt)),
        ]
        variables += specialTokens
        variables += request.variables
        let rendered: String
        do {
            rendered = try template.render(variables, now: now)
        } catch let error as TemplateError {
            throw RenderError(description: error.description)
        }
        guard let final else { return rendered }
        return try Self.cutAtTag(rendered, final: final)
    }

    private static func normalized(_ message: Value) -> Value {
        guard case .object(let fields) = message else { return message }
        var kept = Mapping(fields.pairs.filter { if case .none = $0.1 { false } else { true } })
        let reasoning = ["reasoning_content", "thinking", "reasoning"].lazy.compactMap { kept[$0] }.first
        guard let reasoning else { return .object(kept) }
        var aliased = Mapping()
        if kept["thinking"] == nil { aliased["thinking"] = reasoning }
        for (key, value) in kept.pairs { aliased[key] = key == "thinking" ? reasoning : value }
        aliased["reasoning_content"] = reasoning
        kept = aliased
        return .object(kept)
    }

    private static let continueTag = "CONTINUE_FINAL_MESSAGE_TAG "

    /// transformers' `continue_final_message`: the final message's text is tagged, so that the
    /// prompt can end where the text does and the model continue it rather than close it.
    private func markFinalMessage(_ messages: inout [Value]) throws -> String {
        guard case .object(var last)? = messages.last else {
            throw RenderError(description: "continue_final_message is set but the conversation is empty!")
        }
        guard source.contains("content") else {
            throw RenderError(description: "continue_final_message is set to \"content\" but this is not an accepted field in the chat_template")
        }
        let final: String
        switch last["content"] {
        case .string(let text)?:
            final = text
            last["content"] = .string(text + Self.continueTag)
        case .array(var blocks)?:
            guard let index = blocks.lastIndex(where: { if case .object(let block) = $0, case .string? = block["text"] { true } else { false } }),
                  case .object(var block) = blocks[index], case .string(let text)? = block["text"] else {
                throw RenderError(description: "continue_final_message is set but we could not find any text to continue in the final message!")
            }
            final = text
            block["text"] = .string(text + Self.continueTag)
            blocks[index] = .object(block)
            last["content"] = .array(blocks)
        default:
            throw RenderError(description: "continue_final_message is set but the final message has no \"content\" to continue!")
        }
        messages[messages.count - 1] = .object(last)
        return final
    }

    private static func cutAtTag(_ rendered: String, final: String) throws -> String {
        let scalars = Array(rendered.unicodeScalars)
        let tag = Array(continueTag.unicodeScalars), trimmedTag = Array(tag.dropLast())
        guard lastOccurrence(of: Array(pythonStrip(final).unicodeScalars), in: scalars) != nil,
              let location = lastOccurrence(of: trimmedTag, in: scalars) else {
            throw RenderError(description: "continue_final_message is set but the final message does not appear in the chat after applying the chat template! This can happen if the chat template deletes portions of the final message. Please verify the chat template and final message in your chat to ensure they are compatible.")
        }
        var view = String.UnicodeScalarView()
        view.append(contentsOf: scalars[..<location])
        let before = String(view)
        if location + tag.count <= scalars.count, scalars[location..<location + tag.count].elementsEqual(tag) { return before }
        return pythonStrip(before, leading: false)
    }

    private static func pythonStrip(_ text: String, leading: Bool = true) -> String {
        let scalars = Array(text.unicodeScalars)
        func isSpace(_ scalar: Unicode.Scalar) -> Bool { scalar.properties.isWhitespace || (0x1C...0x1F).contains(scalar.value) }
        var start = 0, end = scalars.count
        if leading { while start < end, isSpace(scalars[start]) { start += 1 } }
        while end > start, isSpace(scalars[end - 1]) { end -= 1 }
        var view = String.UnicodeScalarView()
        view.append(contentsOf: scalars[start..<end])
        return String(view)
    }

    private static func lastOccurrence(of needle: [Unicode.Scalar], in haystack: [Unicode.Scalar]) -> Int? {
        guard needle.count <= haystack.count else { return nil }
        var index = haystack.count - needle.count
        while index >= 0 {
            if haystack[index..<index + needle.count].elementsEqual(needle) { return index }
            index -= 1
        }
        return nil
    }
}

/// What `tokenizer_config.json` (and `chat_template.jinja`) add to `tokenizer.json`.
public struct TokenizerConfiguration: Sendable {
    public let eosToken: String?
    public let bosToken: String?
    /// The special tokens transformers passes to a chat template (`special_tokens_map`), in its order.
    public let specialTokens: [(String, String)]
    public let additionalSpecialTokens: [String]
    /// The default template, and the named ones (`tool_use`, …) when the config lists several.
    public let chatTemplate: ChatTemplate?
    public let namedChatTemplates: [String: ChatTemplate]

    /// Reads the folder's files; each is optional.
    public init(folder: String) throws {
        let configPath = folder + "/tokenizer_config.json"
        var spec: [String: Any] = [:]
        if let data = FileManager.default.contents(atPath: configPath) {
            guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
                throw TokenizationError.badFile(file: "tokenizer_config.json", reason: "not a JSON object")
            }
            spec = object
        }
        eosToken = Self.tokenText(spec["eos_token"])
        bosToken = Self.tokenText(spec["bos_token"])
        specialTokens = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"].compactMap { name in
            Self.tokenText(spec[name]).map { (name, $0) }
        }
        additionalSpecialTokens = (spec["additional_special_tokens"] as? [Any] ?? []).compactMap(Self.tokenText)
        var named: [String: ChatTemplate] = [:]
        var template: ChatTemplate?
        if let text = try? String(contentsOfFile: folder + "/chat_template.jinja", encoding: .utf8) {
            template = try ChatTemplate(source: text, origin: "chat_template.jinja")
        } else if let text = spec["chat_template"] as? String {
            template = try ChatTemplate(source: text, origin: "tokenizer_config.json")
        } else if let list = spec["chat_template"] as? [[String: Any]] {
            for entry in list {
                guard let name = entry["name"] as? String, let text = entry["template"] as? String else {
                    throw TokenizationError.badFile(file: "tokenizer_config.json", reason: "a named chat template needs 'name' and 'template'")
                }
                named[name] = try ChatTemplate(source: text, origin: "tokenizer_config.json (\(name))")
            }
            template = named["default"]
        }
        chatTemplate = template
        namedChatTemplates = named
    }

    /// The template transformers picks: `tool_use` when tools are given and the config names one.
    public func template(withTools: Bool) -> ChatTemplate? {
        if withTools, let tools = namedChatTemplates["tool_use"] { return tools }
        return chatTemplate ?? namedChatTemplates["default"]
    }

    /// The special tokens as template variables (`additional_special_tokens` as a list).
    public var templateVariables: [(String, Value)] {
        var variables = specialTokens.map { ($0.0, Value.string($0.1)) }
        if !additionalSpecialTokens.isEmpty { variables.append(("additional_special_tokens", .array(additionalSpecialTokens.map { .string($0) }))) }
        return variables
    }

    private static func tokenText(_ value: Any?) -> String? {
        if let text = value as? String { return text }
        return (value as? [String: Any])?["content"] as? String
    }
}
