import Foundation
import FrontEnd
import Messages
import OpenAIAPI
import Tokenization

/// Pieces of OpenAI response bodies shared by the endpoints.
enum ResponseFormatting {
    static func usage(prompt: Int, completion: Int) -> JSONValue {
        .object([("prompt_tokens", .int(prompt)), ("total_tokens", .int(prompt + completion)),
                 ("completion_tokens", .int(completion))])
    }

    static func identifier(_ prefix: String) -> String {
        prefix + String(UInt64.random(in: 0 ... .max), radix: 16) + String(UInt32.random(in: 0 ... .max), radix: 16)
    }

    static var now: Int { Int(Date().timeIntervalSince1970) }

    /// A token as text, invalid UTF-8 (half a character) repaired.
    static func tokenText(_ id: Int, _ tokenizer: Tokenizer) -> String {
        String(decoding: (try? tokenizer.decodeBytes([id])) ?? [], as: UTF8.self)
    }

    /// The legacy completions `logprobs` object over `entries`; `nil` entries (the first prompt token) are null.
    /// How a log-probability entry names its token: its text, or vLLM's "token_id:N".
    static func tokenLabel(_ tokenizer: Tokenizer, asIDs: Bool) -> (Int) -> String {
        asIDs ? { "token_id:\($0)" } : { tokenText($0, tokenizer) }
    }

    static func completionLogprobs(_ entries: [TokenLogprobs?], tokenIDs: [Int], label: (Int) -> String,
                                   firstOffset: Int) -> JSONValue {
        var tokens: [JSONValue] = [], logprobs: [JSONValue] = [], tops: [JSONValue] = [], offsets: [JSONValue] = []
        var offset = firstOffset
        for (entry, id) in zip(entries, tokenIDs) {
            let text = label(id)
            tokens.append(.string(text))
            offsets.append(.int(offset))
            offset += text.unicodeScalars.count
            if let entry {
                logprobs.append(.logprob(entry.logprob))
                tops.append(.object(entry.top.map { (label($0.tokenID), .logprob($0.logprob)) }))
            } else {
                logprobs.append(.null)
                tops.append(.null)
            }
        }
        return .object([("text_offset", .array(offsets)), ("token_logprobs", .array(logprobs)),
                         ("tokens", .array(tokens)), ("top_logprobs", .array(tops))])
    }

    /// The chat `logprobs` object over `entries`.
    static func chatLogprobs(_ entries: ArraySlice<TokenLogprobs>, label: (Int) -> String) -> JSONValue {
        func item(_ id: Int, _ logprob: Float) -> [(String, JSONValue)] {
            let text = label(id)
            return [("token", .string(text)), ("logprob", .logprob(logprob)),
                    ("bytes", .array(Array(text.utf8).map { .int(Int($0)) }))]
        }
        return .object([("content", .array(entries.map { entry in
            .object(item(entry.tokenID, entry.logprob)
                + [("top_logprobs", .array(entry.top.map { .object(item($0.tokenID, $0.logprob)) }))])
        }))])
    }

    /// The error a request gets when every choice failed in the engine.
    static func engineError(_ choices: [ChoiceState]) -> APIError? {
        for choice in choices {
            switch choice.finishReason {
            case .error(let message): return APIError.server(message)
            case .abort: return APIError.unavailable("The request was aborted by the server.")
            default: continue
            }
        }
        return nil
    }
}
