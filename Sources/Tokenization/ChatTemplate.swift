import Foundation

/// A chat message as the OpenAI API sends it.
public struct ChatMessage: Sendable, Equatable {
    public let role: String
    public let content: String

    public init(role: String, content: String) {
        self.role = role
        self.content = content
    }
}

/// Renders chat messages into a prompt.
///
/// Only the ChatML family is understood (`<|im_start|>role\ncontent<|im_end|>\n`, as Qwen and
/// OLMoE-Instruct use): the Jinja source is recognised, not interpreted, and any other template
/// is refused with an error rather than rendered wrongly.
public enum ChatTemplate: Sendable, Equatable {
    case chatML

    public init(source: String, file: String) throws {
        guard source.contains("<|im_start|>"), source.contains("<|im_end|>") else {
            throw TokenizationError.unsupported(file: file, component: "chat_template", detail: "only the ChatML family is supported")
        }
        self = .chatML
    }

    public func render(_ messages: [ChatMessage], addsGenerationPrompt: Bool) -> String {
        switch self {
        case .chatML:
            var prompt = ""
            for message in messages {
                prompt += "<|im_start|>\(message.role)\n\(message.content)<|im_end|>\n"
            }
            if addsGenerationPrompt { prompt += "<|im_start|>assistant\n" }
            return prompt
        }
    }
}

/// What `tokenizer_config.json` (and `chat_template.jinja`) add to `tokenizer.json`.
public struct TokenizerConfiguration: Sendable {
    public let eosToken: String?
    public let bosToken: String?
    public let chatTemplate: ChatTemplate?

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
        var source: String?
        var file = "tokenizer_config.json"
        if let text = try? String(contentsOfFile: folder + "/chat_template.jinja", encoding: .utf8) {
            source = text
            file = "chat_template.jinja"
        } else if let text = spec["chat_template"] as? String {
            source = text
        } else if let named = spec["chat_template"] as? [[String: Any]] {
            source = named.first { $0["name"] as? String == "default" }?["template"] as? String
        }
        chatTemplate = try source.map { try ChatTemplate(source: $0, file: file) }
    }

    private static func tokenText(_ value: Any?) -> String? {
        if let text = value as? String { return text }
        return (value as? [String: Any])?["content"] as? String
    }
}
