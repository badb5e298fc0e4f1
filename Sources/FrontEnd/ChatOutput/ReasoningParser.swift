/// `--reasoning-parser`: splits a model's `<think>…</think>` out of its answer into
/// `reasoning_content`, as vLLM's parsers of the same names do.
public enum ReasoningParser: String, Sendable, CaseIterable {
    /// Qwen3: the model writes `<think>` itself; an output without `</think>` is all answer.
    case qwen3
    /// DeepSeek-R1: the template opens `<think>`, so the output starts in the reasoning; without
    /// `</think>` it is all reasoning.
    case deepseekR1 = "deepseek_r1"

    static let start = "<think>"
    static let end = "</think>"

    /// The reasoning and the answer of a whole output (nil where there is none).
    public func split(_ output: String) -> (reasoning: String?, content: String?) {
        switch self {
        case .qwen3:
            guard output.firstRange(of: Self.start) != nil, output.firstRange(of: Self.end) != nil else { return (nil, output) }
            let afterStart = output.firstRange(of: Self.start).map { String(output[$0.upperBound...]) } ?? output
            guard let end = afterStart.firstRange(of: Self.end) else { return (nil, afterStart) }
            let content = String(afterStart[end.upperBound...])
            return (String(afterStart[..<end.lowerBound]), content.isEmpty ? nil : content)
        case .deepseekR1:
            var text = output
            if let start = text.firstRange(of: Self.start) { text = String(text[start.upperBound...]) }
            guard let end = text.firstRange(of: Self.end) else { return (text, nil) }
            let content = String(text[end.upperBound...])
            return (String(text[..<end.lowerBound]), content.isEmpty ? nil : content)
        }
    }

    /// The streaming counterpart: text pieces in, reasoning and answer pieces out.
    public struct Stream {
        private enum State { case waitingForStart, reasoning, answering }

        private let parser: ReasoningParser
        private var state: State
        private var scanner: MarkerScanner

        public init(_ parser: ReasoningParser) {
            self.parser = parser
            // Both wait for a `<think>` at the start: Qwen3 to enter the reasoning, DeepSeek-R1 to
            // drop the one its template already opened, should the model repeat it.
            state = .waitingForStart
            scanner = MarkerScanner(ReasoningParser.start)
        }

        public struct Piece: Equatable {
            public var reasoning = ""
            public var content = ""
        }

        public mutating func feed(_ text: String) -> Piece {
            var piece = Piece()
            var remaining = text
            while !remaining.isEmpty {
                switch state {
                case .waitingForStart:
                    switch scanner.feed(remaining) {
                    case .found(let before, let after):
                        append(before, to: &piece, asReasoning: parser == .deepseekR1)
                        enterReasoning()
                        remaining = after
                    case .text(let released):
                        // Only whitespace may come before the opening tag; anything else settles the mode.
                        if released.allSatisfy(\.isWhitespace) {
                            append(released, to: &piece, asReasoning: parser == .deepseekR1)
                            remaining = ""
                        } else {
                            let held = scanner.finish()
                            if parser == .qwen3 {
                                state = .answering
                                piece.content += released + held
                                remaining = ""
                            } else {
                                enterReasoning()
                                remaining = released + held
                            }
                        }
                    }
                case .reasoning:
                    switch scanner.feed(remaining) {
                    case .found(let before, let after):
                        piece.reasoning += before
                        state = .answering
                        remaining = after
                    case .text(let released):
                        piece.reasoning += released
                        remaining = ""
                    }
                case .answering:
                    piece.content += remaining
                    remaining = ""
                }
            }
            return piece
        }

        /// What was held back, at the end of the output.
        public mutating func finish() -> Piece {
            var piece = Piece()
            let held = scanner.finish()
            switch state {
            case .reasoning: piece.reasoning = held
            case .waitingForStart: append(held, to: &piece, asReasoning: parser == .deepseekR1)
            case .answering: piece.content = held
            }
            return piece
        }

        private mutating func enterReasoning() {
            state = .reasoning
            scanner = MarkerScanner(ReasoningParser.end)
        }

        private func append(_ text: String, to piece: inout Piece, asReasoning: Bool) {
            if asReasoning { piece.reasoning += text } else { piece.content += text }
        }
    }
}
