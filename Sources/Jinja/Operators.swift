#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Python's arithmetic and comparisons on template values.
enum Operators {
    static func binary(_ operation: String, _ left: Value, _ right: Value) throws -> Value {
        if operation == "~" { return .string(left.text + right.text) }
        if case .undefined(let hint) = left { throw EvaluationError(hint) }
        if case .undefined(let hint) = right { throw EvaluationError(hint) }
        switch (operation, left, right) {
        case ("+", .string(let a), .string(let b)): return .string(a + b)
        case ("+", .array(let a), .array(let b)): return .array(a + b)
        case ("+", .tuple(let a), .tuple(let b)): return .tuple(a + b)
        case ("*", .string(let text), _) where right.integer != nil:
            try checkRepetition(text.utf8.count, right.integer!)
            return .string(String(repeating: text, count: max(0, right.integer!)))
        case ("*", .array(let items), _) where right.integer != nil:
            try checkRepetition(items.count, right.integer!)
            return .array(Array(repeating: items, count: max(0, right.integer!)).flatMap { $0 })
        case ("%", .string(let format), _):
            if case .tuple(let items) = right { return .string(try Formatting.percent(format, items)) }
            return .string(try Formatting.percent(format, [right]))
        default: break
        }
        if let a = left.integer, let b = right.integer {
            switch operation {
            case "+": return .int(try exact(a.addingReportingOverflow(b)))
            case "-": return .int(try exact(a.subtractingReportingOverflow(b)))
            case "*": return .int(try exact(a.multipliedReportingOverflow(by: b)))
            case "/":
                guard b != 0 else { throw EvaluationError("division by zero") }
                return .double(Double(a) / Double(b))
            case "//":
                guard b != 0 else { throw EvaluationError("integer division or modulo by zero") }
                let quotient = try exact(a.dividedReportingOverflow(by: b))
                return .int((a % b != 0 && (a < 0) != (b < 0)) ? quotient - 1 : quotient)
            case "%":
                guard b != 0 else { throw EvaluationError("integer division or modulo by zero") }
                // Swift reports Int.min % -1 as an overflow; its remainder is 0.
                let remainder = b == -1 ? 0 : a % b
                return .int(remainder != 0 && (remainder < 0) != (b < 0) ? remainder + b : remainder)
            case "**":
                if b >= 0 { return .int(try power(a, b)) }
                return .double(pow(Double(a), Double(b)))
            default: break
            }
        }
        if let a = left.number, let b = right.number {
            switch operation {
            case "+": return .double(a + b)
            case "-": return .double(a - b)
            case "*": return .double(a * b)
            case "/":
                guard b != 0 else { throw EvaluationError("float division by zero") }
                return .double(a / b)
            case "//":
                guard b != 0 else { throw EvaluationError("float floor division by zero") }
                return .double((a / b).rounded(.down))
            case "%":
                guard b != 0 else { throw EvaluationError("float modulo") }
                let remainder = a.truncatingRemainder(dividingBy: b)
                return .double(remainder != 0 && (remainder < 0) != (b < 0) ? remainder + b : remainder)
            case "**": return .double(pow(a, b))
            default: break
            }
        }
        throw EvaluationError("unsupported operand type(s) for \(operation): '\(left.typeName)' and '\(right.typeName)'")
    }

    /// Python's integers have no bound; a template's arithmetic that leaves 64 bits fails the
    /// render rather than print a wrapped number.
    static func exact(_ result: (partialValue: Int, overflow: Bool)) throws -> Int {
        guard !result.overflow else { throw EvaluationError("integer overflow: the result does not fit in 64 bits") }
        return result.partialValue
    }

    /// `base ** exponent` by squaring, so that a large exponent costs its bits, not its value.
    private static func power(_ base: Int, _ exponent: Int) throws -> Int {
        var result = 1, factor = base, remaining = exponent
        while remaining > 0 {
            if remaining & 1 == 1 { result = try exact(result.multipliedReportingOverflow(by: factor)) }
            remaining >>= 1
            if remaining > 0 { factor = try exact(factor.multipliedReportingOverflow(by: factor)) }
        }
        return result
    }

    /// `number` as an integer, as Python's `int(number)` truncates it.
    static func truncated(_ number: Double) throws -> Int {
        guard let integer = Int(exactly: number.rounded(.towardZero)) else {
            throw EvaluationError(number.isFinite ? "integer overflow: \(number) does not fit in 64 bits"
                                                  : "cannot convert float \(number) to integer")
        }
        return integer
    }

    /// A prompt is text for a model: a repetition past this many elements is a mistake or an attack.
    static let maximumRepetition = 1 << 24

    private static func checkRepetition(_ count: Int, _ times: Int) throws {
        guard times <= 0 || count <= maximumRepetition / times else {
            throw EvaluationError("a repetition of \(times) × \(count) is larger than \(maximumRepetition)")
        }
    }

    static func compare(_ operation: String, _ left: Value, _ right: Value) throws -> Bool {
        switch operation {
        case "==": return left.equals(right)
        case "!=": return !left.equals(right)
        case "in": return try contains(right, left)
        case "not in": return !(try contains(right, left))
        default: break
        }
        let order: Int
        if let a = left.number, let b = right.number {
            order = a < b ? -1 : a > b ? 1 : 0
        } else if case .string(let a) = left, case .string(let b) = right {
            let x = Array(a.unicodeScalars.map(\.value)), y = Array(b.unicodeScalars.map(\.value))
            order = x.lexicographicallyPrecedes(y) ? -1 : x == y ? 0 : 1
        } else {
            throw EvaluationError("'\(operation)' not supported between instances of '\(left.typeName)' and '\(right.typeName)'")
        }
        switch operation {
        case "<": return order < 0
        case ">": return order > 0
        case "<=": return order <= 0
        default: return order >= 0
        }
    }

    /// Python's `needle in container`.
    static func contains(_ container: Value, _ needle: Value) throws -> Bool {
        switch container {
        case .undefined: return false
        case .string(let text):
            guard case .string(let part) = needle else {
                throw EvaluationError("'in <string>' requires string as left operand, not \(needle.typeName)")
            }
            return text.containsCodePoints(part)
        case .array(let items), .tuple(let items): return items.contains { $0.equals(needle) }
        case .object(let mapping):
            guard case .string(let key) = needle else { return false }
            return mapping[key] != nil
        case .namespace(let namespace):
            guard case .string(let key) = needle else { return false }
            return namespace.members[key] != nil
        default:
            throw EvaluationError("argument of type '\(container.typeName)' is not iterable")
        }
    }
}
