import Jinja

/// A function call the model made, as the OpenAI API returns it.
public struct ToolCall: Sendable, Equatable {
    public let id: String
    public let name: String
    /// JSON text.
    public let arguments: String
}

/// `--tool-call-parser`: how a model writes tool calls, turned into OpenAI `tool_calls` as vLLM's
/// parsers of the same names do.
public enum ToolCallParser: String, Sendable, CaseIterable {
    /// Qwen, Hermes: `<tool_call>{"name": …, "arguments": {…}}</tool_call>`, one block per call.
    case hermes
    /// DeepSeek-V3: `<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\n```json\n{…}\n```<｜tool▁call▁end｜>…`.
    case deepseekV3 = "deepseek_v3"
    /// Mistral: `[TOOL_CALLS][{"name": …, "arguments": {…}}, …]`, or `[TOOL_CALLS]NAME[ARGS]{…}` per call.
    case mistral
    /// Llama 3.1/3.2: the whole output is `{"name": …, "parameters": {…}}`, calls separated by `;`.
    case llama3JSON = "llama3_json"

    /// The text that opens the calls (llama3_json has none: a `{` opening the output).
    var startMarker: String? {
        switch self {
        case .hermes: "<tool_call>"
        case .deepseekV3: "<｜tool▁calls▁begin｜>"
        case .mistral: "[TOOL_CALLS]"
        case .llama3JSON: nil
        }
    }

    /// Whether the markers are special tokens that the detokenizer must keep for the parser to see.
    public var needsSpecialTokens: Bool { self == .mistral || self == .deepseekV3 }

    /// The answer text and the calls of a whole output. An output whose calls do not parse is all
    /// answer, as vLLM returns it; an answer of only whitespace beside calls is none.
    public func parse(_ output: String) -> (content: String?, calls: [ToolCall]) {
        let (before, calls) = parseCalls(output, complete: true)
        guard let calls, !calls.isEmpty else { return (output, []) }
        return (before.allSatisfy(\.isWhitespace) ? nil : before, calls)
    }

    /// The text before the calls, and the calls (nil when there are none or they do not parse).
    /// With `complete` false, only calls whose end has arrived are given.
    func parseCalls(_ output: String, complete: Bool) -> (before: String, calls: [ToolCall]?) {
        switch self {
        case .llama3JSON:
            var text = Substring(output.drop { $0.isWhitespace })
            if text.hasPrefix("<|python_tag|>") { text = text.dropFirst("<|python_tag|>".count) }
            guard text.hasPrefix("{") else { return (output, nil) }
            guard complete else { return ("", []) }
            var calls: [ToolCall] = []
            for object in Self.topLevelValues(String(text), separator: ";") {
                guard case .object(let fields)? = JSON.parse(object), case .string(let name)? = fields["name"],
                      let arguments = fields["parameters"] ?? fields["arguments"], let json = try? JSON.string(arguments) else {
                    return (output, nil)
                }
                calls.append(ToolCall(id: Self.toolCallID(), name: name, arguments: json))
            }
            return ("", calls)
        case .hermes:
            guard let start = output.firstRange(of: "<tool_call>") else { return (output, nil) }
            let before = String(output[..<start.lowerBound])
            var calls: [ToolCall] = []
            var rest = output[start.lowerBound...]
            while let open = rest.firstRange(of: "<tool_call>") {
                let body: Substring
                if let close = rest[open.upperBound...].firstRange(of: "</tool_call>") {
                    body = rest[open.upperBound..<close.lowerBound]
                    rest = rest[close.upperBound...]
                } else {
                    guard complete else { break }
                    body = rest[open.upperBound...]
                    rest = rest[rest.endIndex...]
                }
                guard case .object(let fields)? = JSON.parse(String(body)), case .string(let name)? = fields["name"],
                      let json = try? JSON.string(fields["arguments"] ?? .object(Mapping())) else { return (output, nil) }
                calls.append(ToolCall(id: Self.toolCallID(), name: name, arguments: json))
            }
            return (before, calls)
        case .deepseekV3:
            guard let start = output.firstRange(of: "<｜tool▁calls▁begin｜>") else { return (output, nil) }
            let before = String(output[..<start.lowerBound])
            var calls: [ToolCall] = []
            var rest = output[start.upperBound...]
            var after = ""
            if complete, let end = rest.ranges(of: "<｜tool▁calls▁end｜>").last {
                after = String(rest[end.upperBound...])
                rest = rest[..<end.lowerBound]
            }
            while let open = rest.firstRange(of: "<｜tool▁call▁begin｜>"), let close = rest[open.upperBound...].firstRange(of: "<｜tool▁call▁end｜>") {
                let body = rest[open.upperBound..<close.lowerBound]
                rest = rest[close.upperBound...]
                guard let separator = body.firstRange(of: "<｜tool▁sep｜>"),
                      let newline = body[separator.upperBound...].firstIndex(of: "\n") else { return (output, nil) }
                guard body[..<separator.lowerBound] == "function" else { return (output, nil) }
                let name = String(body[separator.upperBound..<newline])
                var arguments = body[body.index(after: newline)...]
                if arguments.hasPrefix("```json\n") { arguments = arguments.dropFirst("```json\n".count) }
                if arguments.hasSuffix("\n```") { arguments = arguments.dropLast("\n```".count) }
                calls.append(ToolCall(id: Self.toolCallID(), name: name, arguments: String(arguments)))
            }
            return (before + after, calls)
        case .mistral:
            guard let start = output.firstRange(of: "[TOOL_CALLS]") else { return (output, nil) }
            let before = String(output[..<start.lowerBound])
            let body = output[start.upperBound...]
            guard complete else { return (before, []) }
            var calls: [ToolCall] = []
            if body.drop(while: \.isWhitespace).hasPrefix("[") {
                guard case .array(let items)? = JSON.parse(String(body)) else { return (output, nil) }
                for item in items {
                    guard case .object(let fields) = item, case .string(let name)? = fields["name"],
                          let json = try? JSON.string(fields["arguments"] ?? .object(Mapping())) else { return (output, nil) }
                    calls.append(ToolCall(id: Self.mistralID(), name: name, arguments: json))
                }
            } else {
                for part in body.split(separator: "[TOOL_CALLS]", omittingEmptySubsequences: true) {
                    guard let arguments = part.firstRange(of: "[ARGS]") else { return (output, nil) }
                    let json = String(part[arguments.upperBound...])
                    guard JSON.parse(json) != nil else { return (output, nil) }
                    calls.append(ToolCall(id: Self.mistralID(), name: String(part[..<arguments.lowerBound]), arguments: json))
                }
            }
            return (before, calls)
        }
    }

    /// JSON values at the top level of `text`, split at `separator` outside strings and brackets.
    static func topLevelValues(_ text: String, separator: Character) -> [String] {
        var values: [String] = []
        var current = ""
        var depth = 0
        var inString = false
        var escaped = false
        for character in text {
            if inString {
                if escaped { escaped = false } else if character == "\\" { escaped = true } else if character == "\"" { inString = false }
            } else if character == "\"" {
                inString = true
            } else if character == "{" || character == "[" {
                depth += 1
            } else if character == "}" || character == "]" {
                depth -= 1
            } else if character == separator && depth == 0 {
                values.append(current)
                current = ""
                continue
            }
            current.append(character)
        }
        values.append(current)
        return values.map { String($0.drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed()) }.filter { !$0.isEmpty }
    }

    /// vLLM's `chatcmpl-tool-` and 16 random hex digits.
    static func toolCallID() -> String {
        var generator = SystemRandomNumberGenerator()
        let digits = Array("0123456789abcdef")
        return "chatcmpl-tool-" + String((0..<16).map { _ in digits[Int(generator.next() % 16)] })
    }

    /// Mistral's tool-call ids: nine letters and digits.
    static func mistralID() -> String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
        var generator = SystemRandomNumberGenerator()
        return String((0..<9).map { _ in alphabet[Int(generator.next() % UInt64(alphabet.count))] })
    }

    /// The streaming counterpart: answer text passes through until the calls begin; each call is
    /// sent whole (name and arguments in one delta) once its end has arrived, the rest at the end.
    public struct Stream {
        private enum Mode {
            /// llama3_json before the output's first non-blank character, which decides.
            case undecided(String)
            case answer(MarkerScanner?)
            /// Everything from the start of the calls on.
            case calls(String)
        }

        private let parser: ToolCallParser
        private var mode: Mode
        private var sentCalls = 0

        public init(_ parser: ToolCallParser) {
            self.parser = parser
            mode = parser.startMarker.map { .answer(MarkerScanner([$0])) } ?? .undecided("")
        }

        public struct Piece {
            public var content = ""
            public var calls: [ToolCall] = []
        }

        public var hasCalls: Bool { sentCalls > 0 }

        public mutating func feed(_ text: String) -> Piece {
            var piece = Piece()
            switch mode {
            case .undecided(let blank):
                let joined = blank + text
                let rest = joined.drop(while: \.isWhitespace)
                if rest.isEmpty || (rest.first == "<" && "<|python_tag|>".hasPrefix(rest.prefix(14)) && rest.count < 14) {
                    mode = .undecided(joined)
                } else if rest.hasPrefix("{") || rest.hasPrefix("<|python_tag|>") {
                    mode = .calls(joined)
                } else {
                    mode = .answer(nil)
                    piece.content = joined
                }
            case .answer(var scanner):
                guard let marker = parser.startMarker, scanner != nil else {
                    piece.content = text
                    return piece
                }
                switch scanner!.feed(text) {
                case .text(let released):
                    piece.content = released
                    mode = .answer(scanner)
                case .found(let before, _, let after):
                    piece.content = before
                    mode = .calls(marker + after)
                    piece.calls = takeCalls()
                }
            case .calls(let calls):
                mode = .calls(calls + text)
                piece.calls = takeCalls()
            }
            return piece
        }

        public mutating func finish() -> Piece {
            var piece = Piece()
            switch mode {
            case .undecided(let blank):
                piece.content = blank
            case .answer(var scanner):
                piece.content = scanner?.finish() ?? ""
            case .calls(let calls):
                let (rest, parsed) = parser.parseCalls(calls, complete: true)
                if let parsed, !parsed.isEmpty {
                    piece.calls = Array(parsed.dropFirst(sentCalls))
                    sentCalls = parsed.count
                    // What follows the calls, where the format keeps it (DeepSeek's text after its end marker).
                    piece.content = rest
                } else if sentCalls == 0 {
                    // Calls that do not parse are answer text, as in the whole-output parse.
                    piece.content = calls
                }
            }
            mode = .answer(nil)
            return piece
        }

        /// The calls whose end has arrived and that were not sent yet.
        private mutating func takeCalls() -> [ToolCall] {
            guard case .calls(let calls) = mode, let parsed = parser.parseCalls(calls, complete: false).calls,
                  parsed.count > sentCalls else { return [] }
            defer { sentCalls = parsed.count }
            return Array(parsed.dropFirst(sentCalls))
        }
    }
}
