import Foundation
import FrontEnd
import OpenAIAPI
import Tokenization

/// `POST /tokenize` and `POST /detokenize`, as vLLM serves them: a prompt, or chat messages
/// rendered through the chat template, to token ids; token ids back to text.
enum TokenizeEndpoints {
    static func tokenize(_ body: Data, frontEnd: FrontEnd) throws -> JSONValue {
        let json = try parse(body)
        guard case .object(let members) = json else { throw APIError.invalid("The request body must be a JSON object.") }
        func field(_ name: String) -> JSONValue? {
            let value = members.first { $0.0 == name }?.1
            return value == .null ? nil : value
        }
        if case .string(let model)? = field("model") { try frontEnd.checkModel(model) }
        func flag(_ name: String, _ fallback: Bool) throws -> Bool {
            switch field(name) {
            case nil: return fallback
            case .bool(let value)?: return value
            default: throw APIError.invalid("'\(name)' must be a boolean.", param: name)
            }
        }
        let ids: [Int]
        if field("messages") != nil {
            let fields = try ChatTemplateFields(json, addsGenerationPromptByDefault: true)
            try frontEnd.chatTemplating.checkRequestTemplate(fields, trusted: frontEnd.chatOptions.trustsRequestChatTemplate)
            let text = try frontEnd.chatTemplating.prompt(fields)
            ids = frontEnd.tokenizer.encode(text, addsSpecialTokens: try flag("add_special_tokens", false))
        } else if case .string(let prompt)? = field("prompt") {
            ids = frontEnd.tokenizer.encode(prompt, addsSpecialTokens: try flag("add_special_tokens", true))
        } else {
            throw APIError.invalid("Give 'prompt' (a string) or 'messages'.", param: "prompt")
        }
        let tokenStrings: JSONValue = try flag("return_token_strs", false)
            ? .array(ids.map { id in frontEnd.tokenizer.token(of: id).map { .string($0) } ?? .null }) : .null
        return .object([
            ("count", .int(ids.count)), ("max_model_len", .int(frontEnd.limits.maxModelLength)),
            ("tokens", .array(ids.map { .int($0) })), ("token_strs", tokenStrings),
        ])
    }

    static func detokenize(_ body: Data, frontEnd: FrontEnd) throws -> JSONValue {
        guard case .object(let members) = try parse(body) else { throw APIError.invalid("The request body must be a JSON object.") }
        if case .string(let model)? = members.first(where: { $0.0 == "model" })?.1 { try frontEnd.checkModel(model) }
        guard case .array(let items)? = members.first(where: { $0.0 == "tokens" })?.1 else {
            throw APIError.invalid("'tokens' must be a list of token ids.", param: "tokens")
        }
        let ids = try items.map { item -> Int in
            guard case .int(let id) = item else { throw APIError.invalid("'tokens' must be a list of token ids.", param: "tokens") }
            return id
        }
        try frontEnd.checkTokens(ids, param: "tokens")
        let text = try frontEnd.tokenizer.decode(ids, skipsSpecialTokens: false)
        return .object([("prompt", .string(text))])
    }

    private static func parse(_ body: Data) throws -> JSONValue {
        do {
            return try StrictJSON.parse(Array(body))
        } catch .duplicateKey(let key, let path) {
            throw APIError.invalid("The key '\(key)' appears more than once in one object; send each field once.", param: path)
        } catch .syntax(let detail) {
            throw APIError.invalid("The request body is not valid JSON: \(detail).")
        }
    }
}
