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
    /// Whether the output begins inside the reasoning (``ReasoningParser/startsInReasoning(prompt:thinking:)``).
    public let startsInReasoning: Bool
    public let calls: Calls
    /// `parallel_tool_calls: false`: only the first call is kept.
    public let keepsOneCall: Bool

    public init(reasoning: ReasoningParser?, startsInReasoning: Bool = true, calls: Calls, keepsOneCall: Bool = false) {
        self.reasoning = reasoning
        self.startsInReasoning = startsInReasoning
        self.calls = calls
        self.keepsOneCall = keepsOneCall
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
        let (thought, answer) = reasoning.split(text, startsInReasoning: startsInReasoning)
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
            // A forced choice's content is "" rather than null, as vLLM gives it.
            message.calls = Self.requiredCalls(answer ?? "") ?? []
            message.content = message.calls.isEmpty ? (answer ?? "") : ""
        case .named(let name):
            if let answer, !answer.allSatisfy(\.isWhitespace) {
                message.calls = [ToolCall(id: ToolCallParser.toolCallID(), name: name, arguments: answer)]
            }
            message.content = ""
        }
        if keepsOneCall { message.calls = Array(message.calls.prefix(1)) }
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
        private(set) var madeCalls = false

        public init(_ output: ChatOutput) {
            self.output = output
            reasoning = output.reasoning.map { ReasoningParser.Stream($0, startsInReasoning: output.startsInReasoning) }
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
            if let split = reasoning?.feed(text) {
                piece.reasoning = split.reasoning
                answer = split.content
            }
            route(answer, into: &piece, finishing: false)
            return piece
        }

        public mutating func finish() -> Piece {
            var piece = Piece()
            var answer = ""
            if let split = reasoning?.finish() {
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
                var calls = tools?.feed(answer) ?? ToolCallParser.Stream.Piece()
                if finishing, let rest = tools?.finish() {
                    calls.content += rest.content
                    calls.calls += rest.calls
                }
                piece.content = calls.content
                piece.calls = calls.calls
            case .required, .named:
                whole += answer
                if finishing {
                    let message = output.answerMessage(whole)
                    piece.content = message.content ?? ""
                    piece.calls = message.calls
                }
            }
            if output.keepsOneCall { piece.calls = madeCalls ? [] : Array(piece.calls.prefix(1)) }
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
    /// `--trust-request-chat-template`: a request may bring its own template.
    public let trustsRequestChatTemplate: Bool

    public init(reasoningParser: ReasoningParser? = nil, toolCallParser: ToolCallParser? = nil, enablesAutoToolChoice: Bool = false,
                trustsRequestChatTemplate: Bool = false) {
        self.reasoningParser = reasoningParser
        self.toolCallParser = toolCallParser
        self.enablesAutoToolChoice = enablesAutoToolChoice
        self.trustsRequestChatTemplate = trustsRequestChatTemplate
    }
}
