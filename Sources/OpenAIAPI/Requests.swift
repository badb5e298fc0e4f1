public import Foundation

/// `prompt` of `/v1/completions`: text, token ids, or a list of either.
public enum PromptInput: Codable {
    case texts([String])
    case tokenLists([[Int]])

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let text = try? container.decode(String.self) {
            self = .texts([text])
        } else if let ids = try? container.decode([Int].self) {
            self = .tokenLists([ids])
        } else if let texts = try? container.decode([String].self) {
            self = .texts(texts)
        } else if let lists = try? container.decode([[Int]].self) {
            self = .tokenLists(lists)
        } else {
            throw DecodingError.typeMismatch(PromptInput.self, .init(
                codingPath: decoder.codingPath,
                debugDescription: "must be a string, a list of strings, a list of token ids or a list of lists of token ids"))
        }
    }

    /// One prompt as itself (a string, a list of ids), several as a list.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .texts(let texts) where texts.count == 1: try container.encode(texts[0])
        case .texts(let texts): try container.encode(texts)
        case .tokenLists(let lists) where lists.count == 1: try container.encode(lists[0])
        case .tokenLists(let lists): try container.encode(lists)
        }
    }
}

/// `stop`: one string or a list.
public struct StopInput: Codable {
    public let strings: [String]

    public init(_ strings: [String]) { self.strings = strings }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            strings = []
        } else if let one = try? container.decode(String.self) {
            strings = [one]
        } else if let many = try? container.decode([String].self) {
            strings = many
        } else {
            throw DecodingError.typeMismatch(StopInput.self, .init(
                codingPath: decoder.codingPath, debugDescription: "must be a string or a list of strings"))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(strings)
    }
}

public struct StreamOptions: Codable {
    public let includeUsage: Bool?

    public init(includeUsage: Bool?) { self.includeUsage = includeUsage }

    enum CodingKeys: String, CodingKey { case includeUsage = "include_usage" }
}

/// The sampling fields `/v1/completions` and `/v1/chat/completions` share, as sent (a field left
/// `nil` is not sent).
public struct SamplingFields: Codable {
    public let model: String?
    public let maxTokens: Int?
    public let maxCompletionTokens: Int?
    public let temperature: Double?
    public let topP: Double?
    public let topK: Int?
    public let seed: Int?
    public let n: Int?
    public let stop: StopInput?
    public let stopTokenIDs: [Int]?
    public let stream: Bool?
    public let streamOptions: StreamOptions?
    public let ignoreEOS: Bool?
    public let minTokens: Int?
    public let repetitionPenalty: Double?
    public let presencePenalty: Double?
    public let frequencyPenalty: Double?
    public let user: String?
    /// vLLM's extension: log-probability tokens as "token_id:N" rather than text.
    public let returnsTokenIDs: Bool?

    enum CodingKeys: String, CodingKey {
        case model, temperature, seed, n, stop, stream, user
        case returnsTokenIDs = "return_tokens_as_token_ids"
        case maxTokens = "max_tokens"
        case maxCompletionTokens = "max_completion_tokens"
        case topP = "top_p"
        case topK = "top_k"
        case stopTokenIDs = "stop_token_ids"
        case streamOptions = "stream_options"
        case ignoreEOS = "ignore_eos"
        case minTokens = "min_tokens"
        case repetitionPenalty = "repetition_penalty"
        case presencePenalty = "presence_penalty"
        case frequencyPenalty = "frequency_penalty"
    }

    public init(model: String? = nil, maxTokens: Int? = nil, maxCompletionTokens: Int? = nil, temperature: Double? = nil,
                topP: Double? = nil, topK: Int? = nil, seed: Int? = nil, n: Int? = nil, stop: StopInput? = nil,
                stopTokenIDs: [Int]? = nil, stream: Bool? = nil, streamOptions: StreamOptions? = nil, ignoreEOS: Bool? = nil,
                minTokens: Int? = nil, repetitionPenalty: Double? = nil, presencePenalty: Double? = nil,
                frequencyPenalty: Double? = nil, user: String? = nil, returnsTokenIDs: Bool? = nil) {
        self.model = model
        self.maxTokens = maxTokens
        self.maxCompletionTokens = maxCompletionTokens
        self.temperature = temperature
        self.topP = topP
        self.topK = topK
        self.seed = seed
        self.n = n
        self.stop = stop
        self.stopTokenIDs = stopTokenIDs
        self.stream = stream
        self.streamOptions = streamOptions
        self.ignoreEOS = ignoreEOS
        self.minTokens = minTokens
        self.repetitionPenalty = repetitionPenalty
        self.presencePenalty = presencePenalty
        self.frequencyPenalty = frequencyPenalty
        self.user = user
        self.returnsTokenIDs = returnsTokenIDs
    }
}

/// A `/v1/completions` body: the server decodes it, `bench serve` encodes it.
public struct CompletionRequest: Codable {
    public let prompt: PromptInput
    public let logprobs: Int?
    public let echo: Bool?
    public let fields: SamplingFields

    enum CodingKeys: String, CodingKey { case prompt, logprobs, echo }

    public init(prompt: PromptInput, logprobs: Int? = nil, echo: Bool? = nil, fields: SamplingFields) {
        self.prompt = prompt
        self.logprobs = logprobs
        self.echo = echo
        self.fields = fields
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        prompt = try container.decode(PromptInput.self, forKey: .prompt)
        logprobs = try container.decodeIfPresent(Int.self, forKey: .logprobs)
        echo = try container.decodeIfPresent(Bool.self, forKey: .echo)
        fields = try SamplingFields(from: decoder)
    }

    /// The request's own fields and the sampling fields in one object.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(prompt, forKey: .prompt)
        try container.encodeIfPresent(logprobs, forKey: .logprobs)
        try container.encodeIfPresent(echo, forKey: .echo)
        try fields.encode(to: encoder)
    }
}

/// A chat request's sampling and log-probability fields; what reaches the template is
/// ``ChatTemplateFields``, read from the same body.
public struct ChatCompletionRequest: Decodable {
    public let logprobs: Bool?
    public let topLogprobs: Int?
    public let fields: SamplingFields

    enum CodingKeys: String, CodingKey {
        case logprobs
        case topLogprobs = "top_logprobs"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        logprobs = try container.decodeIfPresent(Bool.self, forKey: .logprobs)
        topLogprobs = try container.decodeIfPresent(Int.self, forKey: .topLogprobs)
        fields = try SamplingFields(from: decoder)
    }
}

/// A request field Flexpert does not implement yet: refused with a 400 unless it holds the
/// value that means "not used", rather than accepted and ignored.
public struct UnsupportedField: Sendable {
    public let name: String
    public let isNeutral: @Sendable (JSONValue) -> Bool

    public static func absent(_ name: String) -> UnsupportedField { UnsupportedField(name: name) { $0 == .null } }

    public static func empty(_ name: String) -> UnsupportedField {
        UnsupportedField(name: name) { [.null, .array([]), .object([]), .string("")].contains($0) }
    }

    public static func oneOf(_ name: String, _ values: [JSONValue]) -> UnsupportedField {
        UnsupportedField(name: name) { $0 == .null || values.contains($0) }
    }

    /// Absent, or a number equal to `value` however it is written (`1`, `1.0`).
    public static func number(_ name: String, _ value: Double) -> UnsupportedField {
        UnsupportedField(name: name) { given in
            switch given {
            case .null: true
            case .int(let number): Double(number) == value
            case .number(let number): number == value
            default: false
            }
        }
    }

    /// Plain text output: absent, or an object whose `type` is `text`.
    public static let textFormat = UnsupportedField(name: "response_format") { given in
        guard case .object(let members) = given else { return given == .null }
        return members.first { $0.0 == "type" }?.1 == .string("text")
    }

    public static let shared: [UnsupportedField] = [
        textFormat, .empty("logit_bias"),
        .absent("guided_json"), .absent("guided_regex"), .absent("guided_choice"), .absent("guided_grammar"),
        .absent("structured_outputs"),
    ]
}

extension CompletionRequest {
    public static let unsupportedFields: [UnsupportedField] = UnsupportedField.shared + [.empty("suffix"), .number("best_of", 1)]
}

extension ChatCompletionRequest {
    public static let unsupportedFields: [UnsupportedField] = UnsupportedField.shared + [
        .empty("functions"), .oneOf("function_call", ["none", "auto"]), .absent("prediction"), .absent("audio"),
    ]
}

public enum RequestDecoding {
    /// Decodes a request body, turning decoding failures into 400s that name the field. The body
    /// must be strict JSON (no key twice in one object, see ``StrictJSON``), and `unsupported`
    /// fields must be absent or neutral.
    public static func decode<Request: Decodable>(_ type: Request.Type, from body: Data,
                                           unsupported: [UnsupportedField] = []) throws -> Request {
        try decodeKeepingJSON(type, from: body, unsupported: unsupported).request
    }

    /// ``decode(_:from:unsupported:)``, also giving the body as parsed, for fields read as raw JSON.
    public static func decodeKeepingJSON<Request: Decodable>(_ type: Request.Type, from body: Data,
                                                      unsupported: [UnsupportedField] = []) throws -> (request: Request, json: JSONValue) {
        let value: JSONValue
        do {
            value = try StrictJSON.parse(Array(body))
        } catch .duplicateKey(let key, let path) {
            throw APIError.invalid("The key '\(key)' appears more than once in one object; send each field once.", param: path)
        } catch .syntax(let detail) {
            throw APIError.invalid("The request body is not valid JSON: \(detail).")
        }
        if case .object(let members) = value {
            for field in unsupported {
                if let given = members.first(where: { $0.0 == field.name })?.1, !field.isNeutral(given) {
                    throw APIError.invalid("'\(field.name)' is not supported by this server yet; leave it out.", param: field.name)
                }
            }
        }
        do {
            return (try JSONDecoder().decode(type, from: body), value)
        } catch let error as DecodingError {
            throw apiError(error)
        }
    }

    private static func path(_ codingPath: [any CodingKey]) -> String? {
        guard !codingPath.isEmpty else { return nil }
        var text = ""
        for key in codingPath {
            if let index = key.intValue { text += "[\(index)]" } else { text += (text.isEmpty ? "" : ".") + key.stringValue }
        }
        return text
    }

    private static func apiError(_ error: DecodingError) -> APIError {
        switch error {
        case .typeMismatch(let type, let context):
            let param = path(context.codingPath)
            guard let param else { return .invalid("The request body must be a JSON object.") }
            let expected = context.debugDescription.hasPrefix("must") ? context.debugDescription : "must be \(describe(type))"
            return .invalid("'\(param)' \(expected).", param: param)
        case .valueNotFound(let type, let context):
            let param = path(context.codingPath) ?? "body"
            return .invalid("'\(param)' must be \(describe(type)), not null.", param: param)
        case .keyNotFound(let key, let context):
            let param = path(context.codingPath + [key]) ?? key.stringValue
            return .invalid("'\(param)' is a required field.", param: param)
        case .dataCorrupted(let context):
            if let param = path(context.codingPath) {
                return .invalid("'\(param)': \(context.debugDescription)", param: param)
            }
            return .invalid("The request body is not valid JSON.")
        @unknown default:
            return .invalid("The request body could not be read.")
        }
    }

    private static func describe(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: "a string"
        case is Int.Type: "an integer"
        case is Double.Type: "a number"
        case is Bool.Type: "a boolean"
        case is [Int].Type: "a list of integers"
        case is [String].Type: "a list of strings"
        default:
            String(describing: type).hasPrefix("Dictionary") ? "an object"
                : String(describing: type).hasPrefix("Array") ? "a list" : "of type \(type)"
        }
    }
}
