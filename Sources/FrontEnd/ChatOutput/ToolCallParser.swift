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

    /// Whether the markers are special tokens that the detokenizer must keep for the parser to see
    /// (Llama's `<|python_tag|>` is one too).
    public var needsSpecialTokens: Bool { self != .hermes }

    /// The answer text and the calls of a whole output: what the stream gives, so that streamed
    /// and whole responses agree. An output whose calls do not parse is all answer, as vLLM
    /// returns it; where some calls parsed before one that does not, they stay calls and the text
    /// from the bad one on is answer (a stream cannot take back the calls it sent). An answer of
    /// only whitespace beside calls is none.
    public func parse(_ output: String) -> (content: String?, calls: [ToolCall]) {
        var stream = Stream(self)
        var piece = stream.feed(output)
        let rest = stream.finish()
        piece.content += rest.content
        piece.calls += rest.calls
        guard !piece.calls.isEmpty else { return (output, []) }
        return (piece.content.allSatisfy(\.isWhitespace) ? nil : piece.content, piece.calls)
    }

    /// The markers of the formats that close each call: hermes' `<tool_call>` pairs, DeepSeek's
    /// call markers inside its begin and end of all calls (its `stop`). Nil for the formats read whole.
    private var blockMarkers: (open: String, close: String, stop: String?)? {
        switch self {
        case .hermes: ("<tool_call>", "</tool_call>", nil)
        case .deepseekV3: ("<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>", "<｜tool▁calls▁end｜>")
        case .mistral, .llama3JSON: nil
        }
    }

    var blocks: BlockScanner? { blockMarkers.map { BlockScanner(open: $0.open, close: $0.close, stop: $0.stop) } }

    /// One block's call; nil when it is not one.
    func call(inBlock body: String) -> ToolCall? {
        switch self {
        case .hermes:
            guard case .object(let fields)? = JSON.parse(body), case .string(let name)? = fields["name"],
                  let json = try? JSON.string(fields["arguments"] ?? .object(Mapping())) else { return nil }
            return ToolCall(id: Self.toolCallID(), name: name, arguments: json)
        case .deepseekV3:
            // `function<｜tool▁sep｜>NAME\n```json\n{…}\n````
            let marker = "function<｜tool▁sep｜>"
            guard body.startsWithCodePoints(marker) else { return nil }
            let rest = String(decoding: body.utf8.dropFirst(marker.utf8.count), as: UTF8.self)
            guard let newline = rest.firstByteRange(of: "\n") else { return nil }
            let name = String(decoding: rest.utf8.prefix(newline.lowerBound), as: UTF8.self)
            var arguments = String(decoding: rest.utf8.dropFirst(newline.upperBound), as: UTF8.self)
            if arguments.startsWithCodePoints("```json\n") { arguments = String(decoding: arguments.utf8.dropFirst(8), as: UTF8.self) }
            if arguments.endsWithCodePoints("\n```") { arguments = String(decoding: arguments.utf8.dropLast(4), as: UTF8.self) }
            guard !name.isEmpty, JSON.parse(arguments) != nil else { return nil }
            return ToolCall(id: Self.toolCallID(), name: name, arguments: arguments)
        case .mistral, .llama3JSON:
            return nil
        }
    }

    /// The calls of the formats read whole at the end: Mistral's text after `[TOOL_CALLS]`,
    /// Llama's output from its `{` (or `<|python_tag|>`) on. Nil when they do not parse.
    func calls(inWhole text: String) -> [ToolCall]? {
        switch self {
        case .llama3JSON:
            var body = String(text.unicodeScalars.drop { $0.properties.isWhitespace })
            if body.startsWithCodePoints("<|python_tag|>") { body = String(decoding: body.utf8.dropFirst(14), as: UTF8.self) }
            var calls: [ToolCall] = []
            for object in Self.topLevelValues(body, separator: ";") {
                guard case .object(let fields)? = JSON.parse(object), case .string(let name)? = fields["name"],
                      let arguments = fields["parameters"] ?? fields["arguments"], let json = try? JSON.string(arguments) else {
                    return nil
                }
                calls.append(ToolCall(id: Self.toolCallID(), name: name, arguments: json))
            }
            return calls.isEmpty ? nil : calls
        case .mistral:
            var calls: [ToolCall] = []
            if text.unicodeScalars.drop(while: { $0.properties.isWhitespace }).first == "[" {
                guard case .array(let items)? = JSON.parse(text) else { return nil }
                for item in items {
                    guard case .object(let fields) = item, case .string(let name)? = fields["name"],
                          let json = try? JSON.string(fields["arguments"] ?? .object(Mapping())) else { return nil }
                    calls.append(ToolCall(id: Self.mistralID(), name: name, arguments: json))
                }
            } else {
                // `NAME[ARGS]{…}`, repeated after further `[TOOL_CALLS]` markers.
                var rest = text
                while !rest.isEmpty {
                    let end = rest.firstByteRange(of: "[TOOL_CALLS]")
                    let part = String(decoding: rest.utf8.prefix(end?.lowerBound ?? rest.utf8.count), as: UTF8.self)
                    rest = end.map { String(decoding: rest.utf8.dropFirst($0.upperBound), as: UTF8.self) } ?? ""
                    if part.isEmpty { continue }
                    guard let arguments = part.firstByteRange(of: "[ARGS]") else { return nil }
                    let json = String(decoding: part.utf8.dropFirst(arguments.upperBound), as: UTF8.self)
                    guard JSON.parse(json) != nil else { return nil }
                    calls.append(ToolCall(id: Self.mistralID(), name: String(decoding: part.utf8.prefix(arguments.lowerBound), as: UTF8.self),
                                          arguments: json))
                }
            }
            return calls.isEmpty ? nil : calls
        case .hermes, .deepseekV3:
            return nil
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

    /// The streaming counterpart: answer text passes through until the calls begin; hermes' and
    /// DeepSeek's calls are each sent whole (name and arguments in one delta) once their end has
    /// arrived, Mistral's and Llama's at the end of the output, where their format lets them be read.
    public struct Stream {
        private enum Mode {
            /// llama3_json before the output's first non-blank character, which decides.
            case undecided(String)
            /// Answer text; the scanner looks for the start of the calls, if they are still to come.
            case answer(MarkerScanner?)
            case blocks(BlockScanner)
            /// The calls' text so far, read at the end; `marker` is given back with it if they do not parse.
            case whole(marker: String, text: String)
        }

        private let parser: ToolCallParser
        private var mode: Mode
        private var sentCall = false

        public init(_ parser: ToolCallParser) {
            self.parser = parser
            mode = parser.startMarker.map { .answer(MarkerScanner([$0])) } ?? .undecided("")
        }

        public struct Piece {
            public var content = ""
            public var calls: [ToolCall] = []
        }

        public mutating func feed(_ text: String) -> Piece {
            var piece = Piece()
            switch mode {
            case .undecided(let blank):
                let joined = blank + text
                let rest = String(joined.unicodeScalars.drop { $0.properties.isWhitespace })
                if rest.isEmpty || (rest.utf8.count < 14 && "<|python_tag|>".startsWithCodePoints(rest)) {
                    mode = .undecided(joined)
                } else if rest.startsWithCodePoints("{") || rest.startsWithCodePoints("<|python_tag|>") {
                    mode = .whole(marker: "", text: joined)
                } else {
                    mode = .answer(nil)
                    piece.content = joined
                }
            case .answer(let current):
                guard let marker = parser.startMarker, var scanner = current else {
                    piece.content = text
                    return piece
                }
                switch scanner.feed(text) {
                case .text(let released):
                    piece.content = released
                    mode = .answer(scanner)
                case .found(let before, _, let after):
                    piece.content = before
                    if var blocks = parser.blocks {
                        // Hermes' start marker is its first block's opening.
                        blocks.append(parser == .hermes ? marker + after : after)
                        mode = .blocks(blocks)
                        takeBlocks(into: &piece)
                    } else {
                        mode = .whole(marker: marker, text: after)
                    }
                }
            case .blocks(var blocks):
                blocks.append(text)
                mode = .blocks(blocks)
                takeBlocks(into: &piece)
            case .whole(let marker, let calls):
                mode = .whole(marker: marker, text: calls + text)
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
            case .blocks(var blocks):
                // Hermes reads a last block that never closed; DeepSeek's is text.
                if let body = blocks.finish() {
                    if parser == .hermes, let call = parser.call(inBlock: body) {
                        piece.calls.append(call)
                    } else {
                        piece.content = (parser.blockMarkers?.open ?? "") + body
                    }
                }
            case .whole(let marker, let text):
                if let calls = parser.calls(inWhole: text) { piece.calls = calls } else { piece.content = marker + text }
            }
            mode = .answer(nil)
            return piece
        }

        /// The blocks completed so far; a block that does not parse ends the calls, and it and
        /// everything after it are answer text.
        private mutating func takeBlocks(into piece: inout Piece) {
            guard case .blocks(var blocks) = mode else { return }
            while let event = blocks.next() {
                switch event {
                case .body(let body):
                    if let call = parser.call(inBlock: body) {
                        piece.calls.append(call)
                        sentCall = true
                    } else {
                        let open = parser.blockMarkers?.open ?? "", close = parser.blockMarkers?.close ?? ""
                        // Before any call, the text from the calls' start marker on is the answer, as vLLM gives it.
                        let start = !sentCall && parser == .deepseekV3 ? parser.startMarker ?? "" : ""
                        piece.content += start + open + body + close + blocks.remainder
                        mode = .answer(nil)
                        return
                    }
                case .stopped(let after):
                    piece.content += after
                    mode = .answer(nil)
                    return
                }
            }
            mode = .blocks(blocks)
        }
    }
}
