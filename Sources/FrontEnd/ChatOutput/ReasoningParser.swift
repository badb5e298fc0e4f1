import Jinja

/// `--reasoning-parser`: splits a model's `<think>…</think>` out of its answer into the
/// message's reasoning, as vLLM's parsers of the same names do (vLLM 0.34's rules).
///
/// An output starts in the reasoning unless the prompt already closed it (its last think marker is
/// `</think>`, as Qwen3's template writes with `enable_thinking: false`); a `<think>` the model
/// writes there is absorbed, `</think>` ends the reasoning, and an output that never ends it is all
/// reasoning. Qwen3's reasoning also ends at a `<tool_call>`, which belongs to the answer.
public enum ReasoningParser: String, Sendable, CaseIterable {
    case qwen3
    case deepseekR1 = "deepseek_r1"

    static let start = "<think>"
    static let end = "</think>"

    /// Whether the output of `prompt` starts inside the reasoning. `thinking` is the request's
    /// `chat_template_kwargs.enable_thinking`, which Qwen3 obeys.
    public func startsInReasoning(prompt: String, thinking: Bool?) -> Bool {
        if self == .qwen3 && thinking == false { return false }
        let markers = self == .qwen3 ? [Self.start, Self.end, "<|im_start|>", "<|im_end|>"] : [Self.start, Self.end]
        var last: (Int, String)?
        for marker in markers {
            if let range = prompt.lastByteRange(of: marker), last.map({ range.lowerBound > $0.0 }) ?? true {
                last = (range.lowerBound, marker)
            }
        }
        return last?.1 != Self.end
    }

    /// The reasoning and the answer of a whole output (nil where there is none): the stream's
    /// result, so that streamed and whole responses agree.
    public func split(_ output: String, startsInReasoning: Bool) -> (reasoning: String?, content: String?) {
        var stream = Stream(self, startsInReasoning: startsInReasoning)
        var piece = stream.feed(output)
        let rest = stream.finish()
        piece.reasoning += rest.reasoning
        piece.content += rest.content
        return (piece.reasoning.isEmpty ? nil : piece.reasoning, piece.content.isEmpty ? nil : piece.content)
    }

    /// Text pieces in, reasoning and answer pieces out.
    public struct Stream {
        private let parser: ReasoningParser
        private var isReasoning: Bool
        private var scanner: MarkerScanner

        public init(_ parser: ReasoningParser, startsInReasoning: Bool) {
            self.parser = parser
            isReasoning = startsInReasoning
            scanner = MarkerScanner([ReasoningParser.start, ReasoningParser.end] + (parser == .qwen3 ? ["<tool_call>"] : []))
        }

        public struct Piece: Equatable {
            public var reasoning = ""
            public var content = ""
        }

        public mutating func feed(_ text: String) -> Piece {
            var piece = Piece()
            var remaining = text
            while !remaining.isEmpty {
                guard isReasoning else {
                    piece.content += remaining
                    break
                }
                switch scanner.feed(remaining) {
                case .text(let released):
                    piece.reasoning += released
                    remaining = ""
                case .found(let before, let marker, let after):
                    piece.reasoning += before
                    switch marker {
                    case ReasoningParser.start:
                        remaining = after
                    case ReasoningParser.end:
                        isReasoning = false
                        remaining = after
                    default:
                        isReasoning = false
                        remaining = marker + after
                    }
                }
            }
            return piece
        }

        /// What was held back, at the end of the output.
        public mutating func finish() -> Piece {
            let held = scanner.finish()
            return isReasoning ? Piece(reasoning: held) : Piece(content: held)
        }
    }
}
