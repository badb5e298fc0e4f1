#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Variables visible at a point of a render. A loop iteration, a macro call and a `with` block
/// each open one, so that what they `set` is gone after them, as in Jinja.
final class Scope {
    var variables: [String: Value] = [:]
    let parent: Scope?

    init(parent: Scope?) { self.parent = parent }

    func lookup(_ name: String) -> Value? {
        var scope: Scope? = self
        while let current = scope {
            if let value = current.variables[name] { return value }
            scope = current.parent
        }
        return nil
    }
}

/// One render of a template: owns its scopes and output, on the calling thread.
final class Renderer {
    private enum Flow { case normal, breakLoop, continueLoop }

    private let root: Scope
    private let now: Double?
    /// The line of the statement being run, for errors raised below it.
    private(set) var line = 1
    /// Macro calls in progress: a template that recurses without end fails instead of exhausting the stack.
    private var callDepth = 0
    static let maximumCallDepth = 200
    /// Statements run and loop items taken so far. Loops are bounded by their iterables, but nested
    /// loops multiply: a render that takes more steps than any chat template needs fails its
    /// request instead of holding a thread.
    private var steps = 0
    static let maximumSteps = 1_000_000
    /// A prompt larger than this is not one any model's context holds.
    static let maximumOutputBytes = 1 << 26

    init(variables: Mapping, now: Double?) {
        root = Scope(parent: nil)
        for (key, value) in variables.pairs { root.variables[key] = value }
        self.now = now
    }

    func render(_ statements: [Statement]) throws -> String {
        var output = ""
        _ = try run(statements, scope: root, into: &output)
        return output
    }

    private func fail(_ message: String) -> TemplateError { .runtime(message, line: line) }

    /// Counts statements run and items iterated against `maximumSteps`.
    private func spend(_ count: Int) throws {
        steps += count
        guard steps <= Self.maximumSteps else { throw fail("the render ran past \(Self.maximumSteps) steps") }
    }

    // MARK: Statements

    private func run(_ statements: [Statement], scope: Scope, into output: inout String) throws -> Flow {
        for statement in statements {
            line = statement.line
            try spend(1)
            do {
                let flow = try run(statement, scope: scope, into: &output)
                guard output.utf8.count <= Self.maximumOutputBytes else {
                    throw TemplateError.runtime("the render's output grew past \(Self.maximumOutputBytes) bytes", line: statement.line)
                }
                if flow != .normal { return flow }
            } catch let error as EvaluationError {
                throw TemplateError.runtime(error.message, line: statement.line)
            }
        }
        return .normal
    }

    private func run(_ statement: Statement, scope: Scope, into output: inout String) throws -> Flow {
        switch statement.kind {
        case .text(let text):
            output += text
        case .output(let expression):
            output += try evaluate(expression, scope).text
        case .conditional(let branches, let otherwise):
            for (condition, body) in branches where try evaluate(condition, scope).isTrue {
                return try run(body, scope: scope, into: &output)
            }
            return try run(otherwise, scope: scope, into: &output)
        case .loop(let loop):
            return try runLoop(loop, scope: scope, into: &output)
        case .assign(let targets, let expression):
            let value = try evaluate(expression, scope)
            if targets.count == 1 {
                try assign(targets[0], value, scope: scope)
            } else {
                let items = try unpack(value, count: targets.count)
                for (target, item) in zip(targets, items) { try assign(target, item, scope: scope) }
            }
        case .assignBlock(let name, let filters, let body):
            var captured = ""
            _ = try run(body, scope: scope, into: &captured)
            var value = Value.string(captured)
            for (filter, arguments) in filters { value = try applyFilter(filter, value, try evaluate(arguments, scope)) }
            scope.variables[name] = value
        case .macro(let macro):
            scope.variables[macro.name] = .callable(makeMacro(macro, scope: scope))
        case .call(let callee, let arguments, let callerParameters, let body):
            var evaluated = try evaluate(arguments, scope)
            let caller = Macro(name: "caller", parameters: callerParameters, body: body)
            evaluated.keywords.append(("caller", .callable(makeMacro(caller, scope: scope))))
            output += try call(try evaluate(callee, scope), evaluated).text
        case .filterBlock(let filters, let body):
            var captured = ""
            _ = try run(body, scope: scope, into: &captured)
            var value = Value.string(captured)
            for (filter, arguments) in filters { value = try applyFilter(filter, value, try evaluate(arguments, scope)) }
            output += value.text
        case .scope(let assignments, let body):
            let inner = Scope(parent: scope)
            for (name, expression) in assignments { inner.variables[name] = try evaluate(expression, scope) }
            return try run(body, scope: inner, into: &output)
        case .breakLoop:
            return .breakLoop
        case .continueLoop:
            return .continueLoop
        }
        return .normal
    }

    private func assign(_ target: AssignTarget, _ value: Value, scope: Scope) throws {
        switch target {
        case .name(let name):
            scope.variables[name] = value
        case .member(let name, let member):
            guard case .namespace(let namespace) = scope.lookup(name) ?? .undefined(name) else {
                throw fail("cannot assign attribute on non-namespace object")
            }
            namespace.members[member] = value
        }
    }

    private func unpack(_ value: Value, count: Int) throws -> [Value] {
        let items = try iterate(value)
        guard items.count == count else {
            throw fail(items.count < count ? "not enough values to unpack (expected \(count), got \(items.count))"
                                           : "too many values to unpack (expected \(count))")
        }
        return items
    }

    private func runLoop(_ loop: Loop, scope: Scope, into output: inout String) throws -> Flow {
        if loop.isRecursive { throw TemplateError.unsupported("a recursive for loop", line: line) }
        var items = try iterate(try evaluate(loop.iterable, scope))
        try spend(items.count)
        if let condition = loop.condition {
            items = try items.filter { item in
                let test = Scope(parent: scope)
                try bind(loop.targets, to: item, in: test)
                return try evaluate(condition, test).isTrue
            }
        }
        if items.isEmpty { return try run(loop.otherwise, scope: scope, into: &output) }
        let loopLine = line
        for (index, item) in items.enumerated() {
            let iteration = Scope(parent: scope)
            try bind(loop.targets, to: item, in: iteration)
            if loop.usesLoop { iteration.variables["loop"] = loopObject(index: index, items: items) }
            let flow = try run(loop.body, scope: iteration, into: &output)
            line = loopLine
            if flow == .breakLoop { break }
        }
        return .normal
    }

    private func bind(_ targets: [String], to item: Value, in scope: Scope) throws {
        if targets.count == 1 {
            scope.variables[targets[0]] = item
        } else {
            for (target, value) in zip(targets, try unpack(item, count: targets.count)) { scope.variables[target] = value }
        }
    }

    private func loopObject(index: Int, items: [Value]) -> Value {
        let count = items.count
        var members = Mapping()
        members["index"] = .int(index + 1)
        members["index0"] = .int(index)
        members["revindex"] = .int(count - index)
        members["revindex0"] = .int(count - index - 1)
        members["first"] = .bool(index == 0)
        members["last"] = .bool(index == count - 1)
        members["length"] = .int(count)
        members["depth"] = .int(1)
        members["depth0"] = .int(0)
        members["previtem"] = index > 0 ? items[index - 1] : .undefined("there is no previous item")
        members["nextitem"] = index + 1 < count ? items[index + 1] : .undefined("there is no next item")
        members["cycle"] = .callable(Callable("cycle") { arguments in
            guard !arguments.positional.isEmpty else { throw EvaluationError("no items for cycling given") }
            return arguments.positional[index % arguments.positional.count]
        })
        return .object(members)
    }

    private func makeMacro(_ macro: Macro, scope: Scope) -> Callable {
        Callable(macro.name) { [unowned self] arguments in
            guard self.callDepth < Self.maximumCallDepth else {
                throw EvaluationError("macro '\(macro.name)' nests deeper than \(Self.maximumCallDepth) calls")
            }
            self.callDepth += 1
            defer { self.callDepth -= 1 }
            let inner = Scope(parent: scope)
            var keywords = arguments.keywords
            for (position, parameter) in macro.parameters.enumerated() {
                if position < arguments.positional.count {
                    inner.variables[parameter.name] = arguments.positional[position]
                } else if let index = keywords.firstIndex(where: { $0.0 == parameter.name }) {
                    inner.variables[parameter.name] = keywords.remove(at: index).1
                } else if let defaultValue = parameter.defaultValue {
                    inner.variables[parameter.name] = try self.evaluate(defaultValue, inner)
                } else {
                    inner.variables[parameter.name] = .undefined("parameter '\(parameter.name)' was not provided")
                }
            }
            if let index = keywords.firstIndex(where: { $0.0 == "caller" }) {
                inner.variables["caller"] = keywords.remove(at: index).1
            }
            inner.variables["varargs"] = .array(Array(arguments.positional.dropFirst(macro.parameters.count)))
            inner.variables["kwargs"] = .object(Mapping(keywords))
            let callLine = self.line
            var output = ""
            _ = try self.run(macro.body, scope: inner, into: &output)
            self.line = callLine
            return .string(output)
        }
    }

    // MARK: Expressions

    func evaluate(_ expression: Expression, _ scope: Scope) throws -> Value {
        switch expression {
        case .constant(let constant):
            return constant.value
        case .name(let name):
            return scope.lookup(name) ?? Builtins.global(name, now: now) ?? .undefined("'\(name)' is undefined")
        case .list(let items):
            return .array(try items.map { try evaluate($0, scope) })
        case .tuple(let items):
            return .tuple(try items.map { try evaluate($0, scope) })
        case .dictionary(let pairs):
            var mapping = Mapping()
            for (key, value) in pairs {
                let keyValue = try evaluate(key, scope)
                guard case .string(let text) = keyValue else {
                    throw fail("dictionary keys must be strings here, not \(keyValue.typeName)")
                }
                mapping[text] = try evaluate(value, scope)
            }
            return .object(mapping)
        case .attribute(let base, let name):
            return try Members.attribute(try evaluate(base, scope), name)
        case .index(let base, let key):
            return try Members.item(try evaluate(base, scope), try evaluate(key, scope))
        case .slice(let base, let start, let stop, let step):
            return try Members.slice(try evaluate(base, scope), start: try start.map { try evaluate($0, scope) },
                                     stop: try stop.map { try evaluate($0, scope) }, step: try step.map { try evaluate($0, scope) })
        case .call(let callee, let arguments):
            return try call(try evaluate(callee, scope), try evaluate(arguments, scope))
        case .filter(let base, let name, let arguments):
            return try applyFilter(name, try evaluate(base, scope), try evaluate(arguments, scope))
        case .test(let base, let name, let arguments, let negated):
            let result = try applyTest(name, try evaluate(base, scope), try evaluate(arguments, scope))
            return .bool(result != negated)
        case .negate(let operand):
            let value = try evaluate(operand, scope)
            switch value {
            case .int(let number): return .int(try Operators.exact(0.subtractingReportingOverflow(number)))
            case .double(let number): return .double(-number)
            case .bool(let flag): return .int(flag ? -1 : 0)
            default: throw fail("bad operand type for unary -: '\(value.typeName)'")
            }
        case .plus(let operand):
            let value = try evaluate(operand, scope)
            guard value.number != nil else { throw fail("bad operand type for unary +: '\(value.typeName)'") }
            return value
        case .not(let operand):
            return .bool(!(try evaluate(operand, scope).isTrue))
        case .and(let left, let right):
            let value = try evaluate(left, scope)
            return value.isTrue ? try evaluate(right, scope) : value
        case .or(let left, let right):
            let value = try evaluate(left, scope)
            return value.isTrue ? value : try evaluate(right, scope)
        case .binary(let operation, let left, let right):
            return try Operators.binary(operation, try evaluate(left, scope), try evaluate(right, scope))
        case .compare(let first, let operations):
            var left = try evaluate(first, scope)
            for (operation, rightExpression) in operations {
                let right = try evaluate(rightExpression, scope)
                guard try Operators.compare(operation, left, right) else { return .bool(false) }
                left = right
            }
            return .bool(true)
        case .conditional(let test, let then, let otherwise):
            if try evaluate(test, scope).isTrue { return try evaluate(then, scope) }
            return try otherwise.map { try evaluate($0, scope) } ?? .undefined("the conditional expression's test was false")
        }
    }

    private func evaluate(_ arguments: ArgumentList, _ scope: Scope) throws -> Arguments {
        Arguments(try arguments.positional.map { try evaluate($0, scope) },
                  keywords: try arguments.keywords.map { ($0.0, try evaluate($0.1, scope)) })
    }

    func call(_ callee: Value, _ arguments: Arguments) throws -> Value {
        switch callee {
        case .callable(let callable): return try callable.body(arguments)
        case .undefined(let hint): throw EvaluationError(hint)
        default: throw EvaluationError("'\(callee.typeName)' object is not callable")
        }
    }

    func applyFilter(_ name: String, _ value: Value, _ arguments: Arguments) throws -> Value {
        guard let filter = Filters.named(name) else { throw TemplateError.unsupported("the filter '\(name)'", line: line) }
        return try filter(value, arguments, self)
    }

    func applyTest(_ name: String, _ value: Value, _ arguments: Arguments) throws -> Bool {
        guard let test = Predicates.named(name) else { throw TemplateError.unsupported("the test '\(name)'", line: line) }
        return try test(value, arguments)
    }

    /// The items a `for` loop visits: a list's values, a dict's keys, a string's characters.
    func iterate(_ value: Value) throws -> [Value] {
        switch value {
        case .undefined: return []
        case .array(let items), .tuple(let items): return items
        case .object(let mapping): return mapping.keys.map { .string($0) }
        case .string(let text): return text.unicodeScalars.map { .string(String($0)) }
        default: throw EvaluationError("'\(value.typeName)' object is not iterable")
        }
    }

    /// `strftime_now(format)`, in local time as Python's `datetime.now().strftime`.
    static func formatTime(_ format: String, now: Double?) -> String {
        var seconds = time_t(now ?? Double(time(nil)))
        var parts = tm()
        localtime_r(&seconds, &parts)
        var buffer = [CChar](repeating: 0, count: 256)
        let count = strftime(&buffer, buffer.count, format, &parts)
        return String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
