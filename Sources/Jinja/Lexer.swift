/// A token of a template: text between tags, tag delimiters, and the expression tokens inside tags.
struct Token {
    enum Kind: Equatable {
        case text(String)
        case variableBegin, variableEnd, blockBegin, blockEnd
        case name(String)
        case string(String)
        case integer(Int)
        case float(Double)
        case symbol(String)
        case end
    }

    let kind: Kind
    let line: Int
}

/// Splits a template into tokens as Jinja's lexer does with transformers' settings
/// (`trim_blocks` and `lstrip_blocks` on, `keep_trailing_newline` off): `{%-`/`-%}` strip the
/// whitespace beside a tag, a block or comment alone on its line loses the line's indentation,
/// and the newline after a block or comment tag is dropped.
struct Lexer {
    private let source: [UInt8]
    private var position = 0
    private var line = 1
    private var tokens: [Token] = []
    /// Whether the text before the next tag starts a line (Jinja's `line_starting`).
    private var lineStarting = true

    private static let symbols = ["//", "**", "==", "!=", ">=", "<=", "+", "-", "/", "*", "%", "~", "[", "]", "(", ")",
                                  "{", "}", ".", ",", ":", "|", "=", "<", ">", ";"].map { Array($0.utf8) }

    init(_ text: String) {
        // Jinja reads \r\n and \r as \n and drops one trailing newline.
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count)
        var previousWasReturn = false
        for byte in text.utf8 {
            if byte == 0x0A && previousWasReturn {
                previousWasReturn = false
                continue
            }
            previousWasReturn = byte == 0x0D
            bytes.append(byte == 0x0D ? 0x0A : byte)
        }
        if bytes.last == 0x0A { bytes.removeLast() }
        source = bytes
    }

    static func tokenize(_ text: String) throws -> [Token] {
        var lexer = Lexer(text)
        try lexer.run()
        lexer.tokens.append(Token(kind: .end, line: lexer.line))
        return lexer.tokens
    }

    private enum Tag { case variable, block, comment }

    private mutating func run() throws {
        while position < source.count {
            guard let (start, tag) = nextTag() else {
                emitText(position..<source.count)
                position = source.count
                break
            }
            var textEnd = start
            let modifier = start + 2 < source.count ? source[start + 2] : 0
            if modifier == UInt8(ascii: "-") {
                while textEnd > position, Self.isWhitespace(source[textEnd - 1]) { textEnd -= 1 }
            } else if modifier != UInt8(ascii: "+"), tag != .variable {
                var lineStart = textEnd
                while lineStart > position, source[lineStart - 1] != 0x0A { lineStart -= 1 }
                let onItsLine = lineStart > position || lineStarting
                if onItsLine, lineStart < textEnd, (lineStart..<textEnd).allSatisfy({ Self.isWhitespace(source[$0]) }) {
                    textEnd = lineStart
                }
            }
            emitText(position..<textEnd)
            countLines(textEnd..<start)
            position = start + 2 + (modifier == UInt8(ascii: "-") || modifier == UInt8(ascii: "+") ? 1 : 0)
            switch tag {
            case .comment: try skipComment()
            case .variable: try lexTag(closing: "}}", begin: .variableBegin, end: .variableEnd)
            case .block: try lexTag(closing: "%}", begin: .blockBegin, end: .blockEnd)
            }
        }
    }

    private func nextTag() -> (Int, Tag)? {
        var index = position
        while index + 1 < source.count {
            if source[index] == UInt8(ascii: "{") {
                switch source[index + 1] {
                case UInt8(ascii: "{"): return (index, .variable)
                case UInt8(ascii: "%"): return (index, .block)
                case UInt8(ascii: "#"): return (index, .comment)
                default: break
                }
            }
            index += 1
        }
        return nil
    }

    private mutating func emitText(_ range: Range<Int>) {
        guard !range.isEmpty else { return }
        tokens.append(Token(kind: .text(String(decoding: source[range], as: UTF8.self)), line: line))
        countLines(range)
    }

    private mutating func countLines(_ range: Range<Int>) {
        for index in range where source[index] == 0x0A { line += 1 }
    }

    private mutating func skipComment() throws {
        let startLine = line
        while position + 1 < source.count, !(source[position] == UInt8(ascii: "#") && source[position + 1] == UInt8(ascii: "}")) {
            if source[position] == 0x0A { line += 1 }
            position += 1
        }
        guard position + 1 < source.count else { throw TemplateError.syntax("unclosed comment", line: startLine) }
        let stripsAfter = position > 0 && source[position - 1] == UInt8(ascii: "-")
        let keepsNewline = position > 0 && source[position - 1] == UInt8(ascii: "+")
        position += 2
        finishTag(stripsAfter: stripsAfter, trims: !keepsNewline)
    }

    /// After a tag's closing delimiter: `-` strips all whitespace, `trim_blocks` one newline.
    private mutating func finishTag(stripsAfter: Bool, trims: Bool) {
        var last: UInt8 = 0
        if stripsAfter {
            while position < source.count, Self.isWhitespace(source[position]) {
                last = source[position]
                if last == 0x0A { line += 1 }
                position += 1
            }
        } else if trims, position < source.count, source[position] == 0x0A {
            last = 0x0A
            line += 1
            position += 1
        }
        lineStarting = last == 0x0A
    }

    private mutating func lexTag(closing: String, begin: Token.Kind, end: Token.Kind) throws {
        let closingBytes = Array(closing.utf8)
        let startLine = line
        tokens.append(Token(kind: begin, line: line))
        let firstToken = tokens.count
        var depth = 0
        while true {
            while position < source.count, Self.isWhitespace(source[position]) {
                if source[position] == 0x0A { line += 1 }
                position += 1
            }
            guard position < source.count else {
                throw TemplateError.syntax("unclosed tag: expected '\(closing)'", line: startLine)
            }
            if depth == 0, let modifier = closingModifier(closingBytes, allowsPlus: begin == .blockBegin) {
                position += closingBytes.count + (modifier == 0 ? 0 : 1)
                tokens.append(Token(kind: end, line: line))
                finishTag(stripsAfter: modifier == UInt8(ascii: "-"), trims: begin == .blockBegin && modifier != UInt8(ascii: "+"))
                if begin == .blockBegin, tokens.count == firstToken + 2, tokens[firstToken].kind == .name("raw") {
                    try lexRaw(startLine: startLine)
                }
                return
            }
            let token = try lexExpressionToken()
            if case .symbol(let symbol) = token {
                if symbol == "(" || symbol == "[" || symbol == "{" { depth += 1 }
                if symbol == ")" || symbol == "]" || symbol == "}" { depth = max(0, depth - 1) }
            }
            tokens.append(Token(kind: token, line: line))
        }
    }

    /// Whether the tag closes here: nil if not, else its modifier (`-`, `+`, or 0 for none).
    private func closingModifier(_ closing: [UInt8], allowsPlus: Bool) -> UInt8? {
        let byte = source[position]
        if byte == UInt8(ascii: "-") || (allowsPlus && byte == UInt8(ascii: "+")), matches(closing, at: position + 1) { return byte }
        return matches(closing, at: position) ? 0 : nil
    }

    /// `{% raw %}…{% endraw %}`: the body is text, tags and all.
    private mutating func lexRaw(startLine: Int) throws {
        tokens.removeLast(3)
        var index = position
        while index + 1 < source.count {
            if source[index] == UInt8(ascii: "{"), source[index + 1] == UInt8(ascii: "%") {
                var at = index + 2
                let modifier = at < source.count ? source[at] : 0
                if modifier == UInt8(ascii: "-") || modifier == UInt8(ascii: "+") { at += 1 }
                while at < source.count, Self.isWhitespace(source[at]) { at += 1 }
                if matches(Array("endraw".utf8), at: at) {
                    at += 6
                    while at < source.count, Self.isWhitespace(source[at]) { at += 1 }
                    var closeModifier: UInt8 = 0
                    if at < source.count, source[at] == UInt8(ascii: "-") || source[at] == UInt8(ascii: "+") {
                        closeModifier = source[at]
                        at += 1
                    }
                    if matches(Array("%}".utf8), at: at) {
                        var textEnd = index
                        if modifier == UInt8(ascii: "-") {
                            while textEnd > position, Self.isWhitespace(source[textEnd - 1]) { textEnd -= 1 }
                        }
                        emitText(position..<textEnd)
                        countLines(textEnd..<(at + 2))
                        position = at + 2
                        finishTag(stripsAfter: closeModifier == UInt8(ascii: "-"), trims: closeModifier != UInt8(ascii: "+"))
                        return
                    }
                }
            }
            index += 1
        }
        throw TemplateError.syntax("missing endraw", line: startLine)
    }

    private func matches(_ bytes: [UInt8], at index: Int) -> Bool {
        index + bytes.count <= source.count && source[index..<index + bytes.count].elementsEqual(bytes)
    }

    private mutating func lexExpressionToken() throws -> Token.Kind {
        let byte = source[position]
        if Self.isNameStart(byte) {
            let start = position
            while position < source.count, Self.isNameStart(source[position]) || Self.isDigit(source[position]) { position += 1 }
            return .name(String(decoding: source[start..<position], as: UTF8.self))
        }
        if Self.isDigit(byte) { return try lexNumber() }
        if byte == UInt8(ascii: "'") || byte == UInt8(ascii: "\"") { return try lexString(quote: byte) }
        for symbol in Self.symbols where matches(symbol, at: position) {
            position += symbol.count
            return .symbol(String(decoding: symbol, as: UTF8.self))
        }
        throw TemplateError.syntax("unexpected character '\(String(decoding: [byte], as: UTF8.self))'", line: line)
    }

    private mutating func lexNumber() throws -> Token.Kind {
        let start = position
        func digits() {
            while position < source.count, Self.isDigit(source[position]) || source[position] == UInt8(ascii: "_") { position += 1 }
        }
        digits()
        var isFloat = false
        if position + 1 < source.count, source[position] == UInt8(ascii: "."), Self.isDigit(source[position + 1]) {
            isFloat = true
            position += 1
            digits()
        }
        if position < source.count, source[position] == UInt8(ascii: "e") || source[position] == UInt8(ascii: "E") {
            var at = position + 1
            if at < source.count, source[at] == UInt8(ascii: "+") || source[at] == UInt8(ascii: "-") { at += 1 }
            if at < source.count, Self.isDigit(source[at]) {
                isFloat = true
                position = at
                digits()
            }
        }
        let text = String(decoding: source[start..<position].filter { $0 != UInt8(ascii: "_") }, as: UTF8.self)
        if isFloat, let value = Double(text) { return .float(value) }
        if let value = Int(text) { return .integer(value) }
        throw TemplateError.syntax("bad number '\(text)'", line: line)
    }

    /// A string literal, its escapes read as Python's `unicode-escape` reads them.
    private mutating func lexString(quote: UInt8) throws -> Token.Kind {
        let startLine = line
        position += 1
        var bytes: [UInt8] = []
        while position < source.count, source[position] != quote {
            let byte = source[position]
            if byte == 0x0A { line += 1 }
            guard byte == UInt8(ascii: "\\"), position + 1 < source.count else {
                bytes.append(byte)
                position += 1
                continue
            }
            let escaped = source[position + 1]
            position += 2
            switch escaped {
            case UInt8(ascii: "n"): bytes.append(0x0A)
            case UInt8(ascii: "t"): bytes.append(0x09)
            case UInt8(ascii: "r"): bytes.append(0x0D)
            case UInt8(ascii: "a"): bytes.append(0x07)
            case UInt8(ascii: "b"): bytes.append(0x08)
            case UInt8(ascii: "f"): bytes.append(0x0C)
            case UInt8(ascii: "v"): bytes.append(0x0B)
            case UInt8(ascii: "\\"), UInt8(ascii: "'"), UInt8(ascii: "\""): bytes.append(escaped)
            case 0x0A: line += 1
            case UInt8(ascii: "x"), UInt8(ascii: "u"), UInt8(ascii: "U"):
                let count = escaped == UInt8(ascii: "x") ? 2 : escaped == UInt8(ascii: "u") ? 4 : 8
                guard position + count <= source.count,
                      let value = UInt32(String(decoding: source[position..<position + count], as: UTF8.self), radix: 16),
                      let scalar = Unicode.Scalar(value) else {
                    throw TemplateError.syntax("bad \\\(String(decoding: [escaped], as: UTF8.self)) escape in a string", line: line)
                }
                bytes += Array(String(scalar).utf8)
                position += count
            case UInt8(ascii: "0")...UInt8(ascii: "7"):
                var value = UInt32(escaped - UInt8(ascii: "0"))
                var taken = 1
                while taken < 3, position < source.count, (UInt8(ascii: "0")...UInt8(ascii: "7")).contains(source[position]) {
                    value = value * 8 + UInt32(source[position] - UInt8(ascii: "0"))
                    position += 1
                    taken += 1
                }
                bytes += Array(String(Unicode.Scalar(value) ?? "\u{FFFD}").utf8)
            default:
                bytes += [UInt8(ascii: "\\"), escaped]
            }
        }
        guard position < source.count else { throw TemplateError.syntax("unclosed string", line: startLine) }
        position += 1
        return .string(String(decoding: bytes, as: UTF8.self))
    }

    static func isWhitespace(_ byte: UInt8) -> Bool {
        byte == 0x20 || (0x09...0x0D).contains(byte) || (0x1C...0x1F).contains(byte)
    }

    private static func isNameStart(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
            || byte == UInt8(ascii: "_") || byte >= 0x80
    }

    private static func isDigit(_ byte: UInt8) -> Bool { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) }
}
