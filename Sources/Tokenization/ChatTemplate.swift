import Foundation
public import Jinja

/// A model's chat template, interpreted as transformers' `apply_chat_template` interprets it.
public struct ChatTemplate: Sendable {
    private let template: Template
    /// Where it came from, for errors (`tokenizer_config.json`, `chat_template.jinja`, a path).
    public let origin: String

    public init(source: String, origin: String) throws {
        do {
            template = try Template(source)
        } catch let error as TemplateError {
            throw TokenizationError.badFile(file: origin, reason: error.description)
        }
        self.origin = origin
    }

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
    public func render(_ request: Request, specialTokens: [(String, Value)], now: Double? = nil) throws -> String {
        if request.continuesFinalMessage && request.addsGenerationPrompt {
            throw RenderError(description: "continue_final_message and add_generation_prompt are not compatible. Use continue_final_message when you want the model to continue the final message, and add_generation_prompt when you want to add a header that will prompt it to generate a new assistant message instead.")
        }
        var variables: [(String, Value)] = [
            ("messages", .array(request.messages)),
            ("tools", request.tools.map { .array($0) } ?? .none),
            ("documents", request.documents.map { .array($0) } ?? .none),
            ("add_generation_prompt", .bool(request.addsGenerationPrompt)),
        ]
        variables += specialTokens
        variables += request.variables
        var rendered: String
        do {
            rendered = try template.render(variables, now: now)
        } catch let error as TemplateError {
            throw RenderError(description: error.description)
        }
        if request.continuesFinalMessage { rendered = try Self.cutAfterFinalMessage(rendered, request.messages) }
        return rendered
    }

    /// transformers' `continue_final_message`: the prompt ends where the final message's text
    /// does, so that the model continues it rather than closing it.
    private static func cutAfterFinalMessage(_ rendered: String, _ messages: [Value]) throws -> String {
        guard case .object(let last)? = messages.last else {
            throw RenderError(description: "continue_final_message needs a final message")
        }
        var text: String?
        switch last["content"] {
        case .string(let content)?: text = content
        case .array(let blocks)?:
            for case .object(let block) in blocks.reversed() {
                if case .string(let content)? = block["text"] {
                    text = content
                    break
                }
            }
        default: break
        }
        guard let final = text else {
            throw RenderError(description: "continue_final_message is set but we could not find any text to continue in the final message!")
        }
        let scalars = Array(rendered.unicodeScalars)
        let stripped = Array(pythonStrip(final).unicodeScalars)
        guard let location = lastOccurrence(of: stripped, in: scalars) else {
            throw RenderError(description: "continue_final_message is set but the final message does not appear in the chat after applying the chat template! This can happen if the chat template deletes portions of the final message. Please verify the chat template and final message in your chat to ensure they are compatible.")
        }
        let leftStripped = Array(pythonStrip(final, trailing: false).unicodeScalars)
        let end: Int
        if location + leftStripped.count <= scalars.count,
           scalars[location..<location + leftStripped.count].elementsEqual(final.unicodeScalars) {
            end = location + leftStripped.count
        } else {
            end = location + stripped.count
        }
        var view = String.UnicodeScalarView()
        view.append(contentsOf: scalars[..<end])
        return String(view)
    }

    private static func pythonStrip(_ text: String, trailing: Bool = true) -> String {
        let scalars = Array(text.unicodeScalars)
        func isSpace(_ scalar: Unicode.Scalar) -> Bool { scalar.properties.isWhitespace || (0x1C...0x1F).contains(scalar.value) }
        var start = 0, end = scalars.count
        while start < end, isSpace(scalars[start]) { start += 1 }
        if trailing { while end > start, isSpace(scalars[end - 1]) { end -= 1 } }
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
