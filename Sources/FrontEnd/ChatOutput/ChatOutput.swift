import Jinja

/// How a chat response's text becomes its message: reasoning split out first, then tool calls
/// out of what is left, as vLLM chains its reasoning and tool parsers.
public struct ChatOutput: Sendable {
    public enum Calls: Sendable, Equatable {
        /// No tool parsing: the text is the answer.
        case none
        /// `tool_choice: "auto"` with `--enable-auto-tool-choice`: the parser finds the calls.
        case parsed(ToolCallParser)
        /// `tool_choice: "required"`: the output is a JSON list of `{"name", "parameters"}`.
        case required
        /// A named function: the whole output is its arguments.
        case named(String)
    }

    public let reasoning: ReasoningParser?
    public let calls: Calls

    public init(reasoning: ReasoningParser?, calls: Calls) {
        self.reasoning = reasoning
        self.calls = calls
    }

    /// Whether the detokenizer must keep special tokens for the parser to see its markers.
    public var keepsSpecialTokens: Bool {
        if case .parsed(let parser) = calls { return parser.needsSpecialTokens }
        return false
    }

    public struct Message {
        public var reasoning: String?
        public var content: String?
        public var calls: [ToolCall] = []
    }

    /// The message of a whole output.
    public func message(_ text: String) -> Message {
        guard let reasoning else { return answerMessage(text) }
        let (thought, answer) = reasoning.split(text)
        var message = answer.map(answerMessage) ?? Message()
        message.reasoning = thought
        return message
    }

    /// The content and calls of the answer, the text after any reasoning.
    private func answerMessage(_ answer: String?) -> Message {
        var message = Message()
        switch calls {
        case .none:
            message.content = answer
        case .parsed(let parser):
            if let answer { (message.content, message.calls) = parser.parse(answer) }
        case .required:
            message.calls = Self.requiredCalls(answer ?? "") ?? []
            if message.calls.isEmpty { message.content = answer }
        case .named(let name):
            message.calls = [ToolCall(id: ToolCallParser.toolCallID(), name: name, arguments: answer ?? "")]
            message.content = ""
        }
        return message
    }

    /// vLLM's form for `tool_choice: "required"`: `[{"name": …, "parameters": {…}}, …]`.
    static func requiredCalls(_ text: String) -> [ToolCall]? {
        guard case .array(let items)? = JSON.parse(text) else { return nil }
        var calls: [ToolCall] = []
        for item in items {
            guard case .object(let fields) = item, case .string(let name)? = fields["name"],
                  let arguments = try? JSON.string(fields["parameters"] ?? fields["arguments"] ?? .object(Mapping())) else { return nil }
            calls.append(ToolCall(id: ToolCallParser.toolCallID(), name: name, arguments: arguments))
        }
        return calls
    }

    /// The streaming counterpart of ``message(_:)``.
    public struct Stream {
        private let output: ChatOutput
        private var reasoning: ReasoningParser.Stream?
        private var tools: ToolCallParser.Stream?
        /// The answer text kept whole for `required` and named calls, which are read at the end.
        private var whole = ""
        public private(set) var madeCalls = false

        public init(_ output: ChatOutput) {
            self.output = output
            reasoning = output.reasoning.map(ReasoningParser.Stream.init)
            if case .parsed(let parser) = output.calls { tools = ToolCallParser.Stream(parser) }
        }

        public struct Piece {
            public var reasoning = ""
            public var content = ""
            public var calls: [ToolCall] = []
        }

        public mutating func feed(_ text: String) -> Piece {
            var piece = Piece()
            var answer = text
            if reasoning != nil {
                let split = reasoning!.feed(text)
                piece.reasoning = split.reasoning
                answer = split.content
            }
            route(answer, into: &piece, finishing: false)
            return piece
        }

        public mutating func finish() -> Piece {
            var piece = Piece()
            var answer = ""
            if reasoning != nil {
                let split = reasoning!.finish()
                piece.reasoning = split.reasoning
                answer = split.content
            }
            route(answer, into: &piece, finishing: true)
            return piece
        }

        private mutating func route(_ answer: String, into piece: inout Piece, finishing: Bool) {
            switch output.calls {
            case .none:
                piece.content = answer
            case .parsed:
                var calls = tools!.feed(answer)
                if finishing {
                    let rest = tools!.finish()
                    calls.content += rest.content
                    calls.calls += rest.calls
                }
                piece.content = calls.content
                piece.calls = calls.calls
            case .required, .named:
                whole += answer
                if finishing {
                    let message = output.answerMessage(whole)
                    piece.content = message.calls.isEmpty ? (message.content ?? "") : ""
                    piece.calls = message.calls
                }
            }
            if !piece.calls.isEmpty { madeCalls = true }
        }
    }
}

/// The server's chat output settings: vLLM's `--reasoning-parser`, `--enable-auto-tool-choice`
/// and `--tool-call-parser`.
public struct ChatOptions: Sendable {
    public let reasoningParser: ReasoningParser?
    public let toolCallParser: ToolCallParser?
    public let enablesAutoToolChoice: Bool

    public init(reasoningParser: ReasoningParser? = nil, toolCallParser: ToolCallParser? = nil, enablesAutoToolChoice: Bool = false) {
        self.reasoningParser = reasoningParser
        self.toolCallParser = toolCallParser
        self.enablesAutoToolChoice = enablesAutoToolChoice
    }
}
