/// Jinja's grammar, with its operator precedence (`jinja2/parser.py`): a template is a list of
/// statements; expressions go conditional → or → and → not → comparison → + - → ~ → * / // % →
/// ** → unary → postfix (`.` `[]` `()`) → filters and tests.
struct Parser {
    private let tokens: [Token]
    private var index = 0
    /// Blocks and sub-expressions open at this point: the parser and the renderer recurse once per
    /// level, so a bound here keeps a pathological template from exhausting a thread's stack.
    private var nesting = 0
    static let maximumNesting = 100

    init(tokens: [Token]) { self.tokens = tokens }

    static func parse(_ source: String) throws -> [Statement] {
        var parser = Parser(tokens: try Lexer.tokenize(source))
        let (body, end) = try parser.parseBody(until: [])
        if let end { throw TemplateError.syntax("unexpected '\(end)'", line: parser.current.line) }
        return body
    }

    private var current: Token { tokens[index] }

    private func peek(_ offset: Int = 1) -> Token { tokens[min(index + offset, tokens.count - 1)] }

    private mutating func advance() { if index < tokens.count - 1 { index += 1 } }

    private func fail(_ message: String) -> TemplateError { .syntax(message, line: current.line) }

    private var currentName: String? {
        if case .name(let name) = current.kind { return name }
        return nil
    }

    private func isSymbol(_ symbol: String) -> Bool { current.kind == .symbol(symbol) }

    private func isName(_ name: String) -> Bool { current.kind == .name(name) }

    private mutating func skip(symbol: String) -> Bool {
        guard isSymbol(symbol) else { return false }
        advance()
        return true
    }

    private mutating func skip(name: String) -> Bool {
        guard isName(name) else { return false }
        advance()
        return true
    }

    private mutating func expect(symbol: String) throws {
        guard skip(symbol: symbol) else { throw fail("expected '\(symbol)', found \(describe(current))") }
    }

    private mutating func expectName() throws -> String {
        guard let name = currentName else { throw fail("expected a name, found \(describe(current))") }
        advance()
        return name
    }

    private mutating func expectBlockEnd() throws {
        guard current.kind == .blockEnd else { throw fail("expected the end of the tag, found \(describe(current))") }
        advance()
    }

    private func describe(_ token: Token) -> String {
        switch token.kind {
        case .text: "text"
        case .variableBegin: "'{{'"
        case .variableEnd: "'}}'"
        case .blockBegin: "'{%'"
        case .blockEnd: "'%}'"
        case .name(let name): "'\(name)'"
        case .string(let value): "string '\(value)'"
        case .integer(let value): "\(value)"
        case .float(let value): "\(value)"
        case .symbol(let symbol): "'\(symbol)'"
        case .end: "the end of the template"
        }
    }

    private mutating func enter() throws {
        nesting += 1
        guard nesting <= Self.maximumNesting else { throw fail("blocks or expressions nested deeper than \(Self.maximumNesting)") }
    }

    // MARK: Statements

    /// Statements up to a block tag named in `ends` (returned, its name consumed) or the end.
    private mutating func parseBody(until ends: Set<String>) throws -> ([Statement], String?) {
        try enter()
        defer { nesting -= 1 }
        var body: [Statement] = []
        while true {
            let token = current
            switch token.kind {
            case .end:
                if !ends.isEmpty { throw fail("missing '\(ends.sorted().joined(separator: "' or '"))'") }
                return (body, nil)
            case .text(let text):
                body.append(Statement(kind: .text(text), line: token.line))
                advance()
            case .variableBegin:
                advance()
                let expression = try parseExpression()
                guard current.kind == .variableEnd else { throw fail("expected '}}', found \(describe(current))") }
                advance()
                body.append(Statement(kind: .output(expression), line: token.line))
            case .blockBegin:
                advance()
                guard let name = currentName else { throw fail("expected a tag name, found \(describe(current))") }
                if ends.contains(name) {
                    advance()
                    return (body, name)
                }
                body.append(try parseStatement(name, line: token.line))
            default:
                throw fail("unexpected \(describe(token))")
            }
        }
    }

    private mutating func parseStatement(_ name: String, line: Int) throws -> Statement {
        advance()
        switch name {
        case "if": return Statement(kind: try parseIf(), line: line)
        case "for": return Statement(kind: .loop(try parseFor()), line: line)
        case "set": return Statement(kind: try parseSet(), line: line)
        case "macro": return Statement(kind: .macro(try parseMacro()), line: line)
        case "call": return Statement(kind: try parseCall(), line: line)
        case "filter":
            let filters = try parseFilterChain(first: true)
            try expectBlockEnd()
            let (body, _) = try parseBody(until: ["endfilter"])
            try expectBlockEnd()
            return Statement(kind: .filterBlock(filters: filters, body: body), line: line)
        case "with":
            var assignments: [(String, Expression)] = []
            while current.kind != .blockEnd {
                if !assignments.isEmpty { try expect(symbol: ",") }
                let target = try expectName()
                try expect(symbol: "=")
                assignments.append((target, try parseExpression()))
            }
            try expectBlockEnd()
            let (body, _) = try parseBody(until: ["endwith"])
            try expectBlockEnd()
            return Statement(kind: .scope(assignments: assignments, body: body), line: line)
        case "generation":
            // transformers' AssistantTracker tag: it marks assistant text for masks; the text renders as is.
            try expectBlockEnd()
            let (body, _) = try parseBody(until: ["endgeneration"])
            try expectBlockEnd()
            return Statement(kind: .scope(assignments: [], body: body), line: line)
        case "break", "continue":
            try expectBlockEnd()
            return Statement(kind: name == "break" ? .breakLoop : .continueLoop, line: line)
        case "include", "import", "from", "extends", "block", "do", "autoescape", "trans":
            throw TemplateError.unsupported("the '\(name)' tag", line: line)
        default:
            throw TemplateError.syntax("unknown tag '\(name)'", line: line)
        }
    }

    private mutating func parseIf() throws -> Statement.Kind {
        var branches: [(Expression, [Statement])] = []
        var condition = try parseExpression()
        while true {
            try expectBlockEnd()
            let (body, end) = try parseBody(until: ["elif", "else", "endif"])
            branches.append((condition, body))
            switch end {
            case "elif":
                condition = try parseExpression()
            case "else":
                try expectBlockEnd()
                let (otherwise, _) = try parseBody(until: ["endif"])
                try expectBlockEnd()
                return .conditional(branches, otherwise: otherwise)
            default:
                try expectBlockEnd()
                return .conditional(branches, otherwise: [])
            }
        }
    }

    private mutating func parseFor() throws -> Loop {
        var targets: [String] = []
        let parenthesized = skip(symbol: "(")
        repeat {
            targets.append(try expectName())
        } while skip(symbol: ",")
        if parenthesized { try expect(symbol: ")") }
        guard skip(name: "in") else { throw fail("expected 'in' in a for loop") }
        let iterable = try parseTuple(allowsConditional: false)
        var condition: Expression?
        if skip(name: "if") { condition = try parseExpression() }
        let isRecursive = skip(name: "recursive")
        try expectBlockEnd()
        let bodyStart = index
        let (body, end) = try parseBody(until: ["else", "endfor"])
        let usesLoop = tokens[bodyStart..<index].contains { $0.kind == .name("loop") }
        var otherwise: [Statement] = []
        if end == "else" {
            try expectBlockEnd()
            (otherwise, _) = try parseBody(until: ["endfor"])
        }
        try expectBlockEnd()
        return Loop(targets: targets, iterable: iterable, condition: condition, body: body, otherwise: otherwise,
                    isRecursive: isRecursive, usesLoop: usesLoop)
    }

    private mutating func parseSet() throws -> Statement.Kind {
        var targets: [AssignTarget] = []
        repeat {
            let name = try expectName()
            if skip(symbol: ".") {
                targets.append(.member(name, try expectName()))
            } else {
                targets.append(.name(name))
            }
        } while skip(symbol: ",")
        if skip(symbol: "=") {
            let value = try parseTuple(allowsConditional: true)
            try expectBlockEnd()
            return .assign(targets: targets, value)
        }
        guard targets.count == 1, case .name(let name) = targets[0] else { throw fail("a block set assigns one name") }
        let filters = current.kind == .blockEnd ? [] : try parseFilterChain(first: false)
        try expectBlockEnd()
        let (body, _) = try parseBody(until: ["endset"])
        try expectBlockEnd()
        return .assignBlock(name: name, filters: filters, body: body)
    }

    private mutating func parseParameters() throws -> [Parameter] {
        var parameters: [Parameter] = []
        try expect(symbol: "(")
        while !skip(symbol: ")") {
            if !parameters.isEmpty { try expect(symbol: ",") }
            if skip(symbol: ")") { break }
            let name = try expectName()
            let defaultValue = skip(symbol: "=") ? try parseExpression() : nil
            parameters.append(Parameter(name: name, defaultValue: defaultValue))
        }
        return parameters
    }

    private mutating func parseMacro() throws -> Macro {
        let name = try expectName()
        let parameters = try parseParameters()
        try expectBlockEnd()
        let (body, _) = try parseBody(until: ["endmacro"])
        if currentName == name { advance() }
        try expectBlockEnd()
        return Macro(name: name, parameters: parameters, body: body)
    }

    private mutating func parseCall() throws -> Statement.Kind {
        let callerParameters = isSymbol("(") ? try parseParameters() : []
        let callee = try parsePrimaryWithPostfix()
        guard case .call(let macro, let arguments) = callee else { throw fail("expected a macro call") }
        try expectBlockEnd()
        let (body, _) = try parseBody(until: ["endcall"])
        try expectBlockEnd()
        return .call(macro: macro, arguments, callerParameters: callerParameters, body: body)
    }

    /// `name(args) | name(args) …`, the leading `|` only after the first when `first`.
    private mutating func parseFilterChain(first: Bool) throws -> [(String, ArgumentList)] {
        var filters: [(String, ArgumentList)] = []
        var needsBar = !first
        while current.kind != .blockEnd {
            if needsBar { try expect(symbol: "|") }
            needsBar = true
            let name = try parseDottedName()
            filters.append((name, isSymbol("(") ? try parseArguments() : ArgumentList()))
        }
        return filters
    }

    // MARK: Expressions

    mutating func parseExpression() throws -> Expression {
        try parseConditional()
    }

    /// Comma-separated expressions: one is itself, several (or a trailing comma) a tuple.
    private mutating func parseTuple(allowsConditional: Bool) throws -> Expression {
        var items: [Expression] = []
        var sawComma = false
        repeat {
            if !items.isEmpty, current.kind == .blockEnd || current.kind == .variableEnd || isSymbol(")") { break }
            items.append(allowsConditional ? try parseExpression() : try parseOr())
            if isSymbol(",") { sawComma = true }
        } while skip(symbol: ",")
        return items.count == 1 && !sawComma ? items[0] : .tuple(items)
    }

    private mutating func parseConditional() throws -> Expression {
        var expression = try parseOr()
        while skip(name: "if") {
            let test = try parseOr()
            let otherwise = skip(name: "else") ? try parseConditional() : nil
            expression = .conditional(test: test, then: expression, otherwise: otherwise)
        }
        return expression
    }

    private mutating func parseOr() throws -> Expression {
        var left = try parseAnd()
        while skip(name: "or") { left = .or(left, try parseAnd()) }
        return left
    }

    private mutating func parseAnd() throws -> Expression {
        var left = try parseNot()
        while skip(name: "and") { left = .and(left, try parseNot()) }
        return left
    }

    private mutating func parseNot() throws -> Expression {
        if skip(name: "not") { return .not(try parseNot()) }
        return try parseCompare()
    }

    private mutating func parseCompare() throws -> Expression {
        let left = try parseMath1()
        var operations: [(String, Expression)] = []
        while true {
            if case .symbol(let symbol) = current.kind, ["==", "!=", "<", ">", "<=", ">="].contains(symbol) {
                advance()
                operations.append((symbol, try parseMath1()))
            } else if skip(name: "in") {
                operations.append(("in", try parseMath1()))
            } else if isName("not"), peek().kind == .name("in") {
                advance()
                advance()
                operations.append(("not in", try parseMath1()))
            } else {
                break
            }
        }
        return operations.isEmpty ? left : .compare(left, operations)
    }

    private mutating func parseMath1() throws -> Expression {
        var left = try parseConcat()
        while case .symbol(let symbol) = current.kind, symbol == "+" || symbol == "-" {
            advance()
            left = .binary(symbol, left, try parseConcat())
        }
        return left
    }

    private mutating func parseConcat() throws -> Expression {
        var left = try parseMath2()
        while skip(symbol: "~") { left = .binary("~", left, try parseMath2()) }
        return left
    }

    private mutating func parseMath2() throws -> Expression {
        var left = try parsePower()
        while case .symbol(let symbol) = current.kind, ["*", "/", "//", "%"].contains(symbol) {
            advance()
            left = .binary(symbol, left, try parsePower())
        }
        return left
    }

    private mutating func parsePower() throws -> Expression {
        var left = try parseUnary(withFilters: true)
        while skip(symbol: "**") { left = .binary("**", left, try parseUnary(withFilters: true)) }
        return left
    }

    private mutating func parseUnary(withFilters: Bool) throws -> Expression {
        try enter()
        defer { nesting -= 1 }
        var expression: Expression
        if skip(symbol: "-") {
            expression = .negate(try parseUnary(withFilters: false))
        } else if skip(symbol: "+") {
            expression = .plus(try parseUnary(withFilters: false))
        } else {
            expression = try parsePrimary()
        }
        expression = try parsePostfix(expression)
        if withFilters { expression = try parseFiltersAndTests(expression) }
        return expression
    }

    private mutating func parsePrimaryWithPostfix() throws -> Expression {
        try parsePostfix(try parsePrimary())
    }

    private mutating func parsePrimary() throws -> Expression {
        let token = current
        switch token.kind {
        case .name(let name):
            advance()
            switch name {
            case "true", "True": return .constant(.bool(true))
            case "false", "False": return .constant(.bool(false))
            case "none", "None": return .constant(.none)
            default: return .name(name)
            }
        case .string(var value):
            advance()
            while case .string(let next) = current.kind {
                value += next
                advance()
            }
            return .constant(.string(value))
        case .integer(let value):
            advance()
            return .constant(.int(value))
        case .float(let value):
            advance()
            return .constant(.double(value))
        case .symbol("("):
            advance()
            if skip(symbol: ")") { return .tuple([]) }
            let expression = try parseTuple(allowsConditional: true)
            try expect(symbol: ")")
            return expression
        case .symbol("["):
            advance()
            var items: [Expression] = []
            while !skip(symbol: "]") {
                if !items.isEmpty { try expect(symbol: ",") }
                if skip(symbol: "]") { break }
                items.append(try parseExpression())
            }
            return .list(items)
        case .symbol("{"):
            advance()
            var pairs: [(Expression, Expression)] = []
            while !skip(symbol: "}") {
                if !pairs.isEmpty { try expect(symbol: ",") }
                if skip(symbol: "}") { break }
                let key = try parseExpression()
                try expect(symbol: ":")
                pairs.append((key, try parseExpression()))
            }
            return .dictionary(pairs)
        default:
            throw fail("unexpected \(describe(token))")
        }
    }

    private mutating func parsePostfix(_ base: Expression) throws -> Expression {
        var expression = base
        while true {
            if skip(symbol: ".") {
                switch current.kind {
                case .name(let name):
                    advance()
                    expression = .attribute(expression, name)
                case .integer(let value):
                    advance()
                    expression = .index(expression, .constant(.int(value)))
                default:
                    throw fail("expected a name after '.'")
                }
            } else if skip(symbol: "[") {
                expression = try parseSubscript(expression)
            } else if isSymbol("(") {
                expression = .call(expression, try parseArguments())
            } else {
                return expression
            }
        }
    }

    private mutating func parseSubscript(_ base: Expression) throws -> Expression {
        var start: Expression?
        if !isSymbol(":") {
            start = try parseExpression()
            if skip(symbol: "]") { return .index(base, start!) }
        }
        try expect(symbol: ":")
        var stop: Expression?
        var step: Expression?
        if !isSymbol("]") && !isSymbol(":") { stop = try parseExpression() }
        if skip(symbol: ":"), !isSymbol("]") { step = try parseExpression() }
        try expect(symbol: "]")
        return .slice(base, start: start, stop: stop, step: step)
    }

    private mutating func parseArguments() throws -> ArgumentList {
        var arguments = ArgumentList()
        try expect(symbol: "(")
        var first = true
        while !skip(symbol: ")") {
            if !first { try expect(symbol: ",") }
            first = false
            if skip(symbol: ")") { break }
            if isSymbol("*") || isSymbol("**") { throw TemplateError.unsupported("'*' and '**' arguments", line: current.line) }
            if case .name(let name) = current.kind, peek().kind == .symbol("=") {
                advance()
                advance()
                arguments.keywords.append((name, try parseExpression()))
            } else {
                guard arguments.keywords.isEmpty else { throw fail("a positional argument follows a keyword argument") }
                arguments.positional.append(try parseExpression())
            }
        }
        return arguments
    }

    private mutating func parseDottedName() throws -> String {
        var name = try expectName()
        while isSymbol("."), case .name(let part) = peek().kind {
            advance()
            advance()
            name += "." + part
        }
        return name
    }

    private mutating func parseFiltersAndTests(_ base: Expression) throws -> Expression {
        var expression = base
        while true {
            if skip(symbol: "|") {
                let name = try parseDottedName()
                expression = .filter(expression, name: name, isSymbol("(") ? try parseArguments() : ArgumentList())
            } else if skip(name: "is") {
                let negated = skip(name: "not")
                let name = try parseDottedName()
                var arguments = ArgumentList()
                if isSymbol("(") {
                    arguments = try parseArguments()
                } else if startsTestArgument {
                    arguments.positional = [try parsePrimaryWithPostfix()]
                }
                expression = .test(expression, name: name, arguments, negated: negated)
            } else if isSymbol("(") {
                expression = .call(expression, try parseArguments())
            } else {
                return expression
            }
        }
    }

    /// Jinja lets a test take one argument without parentheses (`x is divisibleby 3`).
    private var startsTestArgument: Bool {
        switch current.kind {
        case .name(let name): !["else", "or", "and", "if", "is"].contains(name)
        case .string, .integer, .float: true
        case .symbol(let symbol): symbol == "[" || symbol == "{"
        default: false
        }
    }
}
