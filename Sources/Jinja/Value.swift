/// A value in a template, with Python's semantics where a chat template relies on them: truth,
/// equality (`1 == 1.0`, `True == 1`), `str()` and `repr()`.
public indirect enum Value {
    /// A name or member that does not exist: prints as "", is false and empty, and refuses
    /// arithmetic and member access, as Jinja's default `Undefined` does.
    case undefined(String)
    case none
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([Value])
    /// Python's tuples: `(a, b)`, and the pairs `items()` gives. Prints as a tuple, is never equal to a list.
    case tuple([Value])
    case object(Mapping)
    case namespace(Namespace)
    case callable(Callable)

    /// The items of a list or a tuple.
    var elements: [Value]? {
        switch self {
        case .array(let items), .tuple(let items): items
        default: nil
        }
    }

    public var isUndefined: Bool {
        if case .undefined = self { true } else { false }
    }

    /// Python's truth.
    public var isTrue: Bool {
        switch self {
        case .undefined, .none: false
        case .bool(let value): value
        case .int(let value): value != 0
        case .double(let value): value != 0
        case .string(let value): !value.isEmpty
        case .array(let values), .tuple(let values): !values.isEmpty
        case .object(let mapping): !mapping.isEmpty
        case .namespace, .callable: true
        }
    }

    /// The Python type's name, for error messages.
    var typeName: String {
        switch self {
        case .undefined: "Undefined"
        case .none: "NoneType"
        case .bool: "bool"
        case .int: "int"
        case .double: "float"
        case .string: "str"
        case .array: "list"
        case .tuple: "tuple"
        case .object: "dict"
        case .namespace: "Namespace"
        case .callable: "function"
        }
    }

    /// The value as a number (Python's bool is an int), or nil.
    var number: Double? {
        switch self {
        case .bool(let value): value ? 1 : 0
        case .int(let value): Double(value)
        case .double(let value): value
        default: nil
        }
    }

    var integer: Int? {
        switch self {
        case .bool(let value): value ? 1 : 0
        case .int(let value): value
        default: nil
        }
    }

    /// Python's `==`.
    func equals(_ other: Value) -> Bool {
        switch (self, other) {
        case (.undefined, .undefined), (.none, .none): return true
        case (.string(let left), .string(let right)): return left.equalsCodePoints(right)
        case (.array(let left), .array(let right)), (.tuple(let left), .tuple(let right)):
            return left.count == right.count && zip(left, right).allSatisfy { $0.equals($1) }
        case (.object(let left), .object(let right)):
            return left.count == right.count && left.keys.allSatisfy { key in
                guard let value = right[key] else { return false }
                return left[key]!.equals(value)
            }
        case (.namespace(let left), .namespace(let right)): return left === right
        default:
            if let left = number, let right = other.number { return left == right }
            return false
        }
    }

    /// Python's `str()`.
    public var text: String {
        switch self {
        case .undefined: ""
        case .none: "None"
        case .bool(let value): value ? "True" : "False"
        case .int(let value): String(value)
        case .double(let value): Self.pythonFloat(value)
        case .string(let value): value
        case .array, .tuple, .object, .namespace, .callable: representation
        }
    }

    /// Python's `repr()`.
    var representation: String { representation(depth: 0) }

    /// A namespace can hold itself: past `JSON.maximumDepth` levels the rest prints as Python
    /// prints a recursive container, `...`.
    private func representation(depth: Int) -> String {
        guard depth < JSON.maximumDepth else { return "..." }
        let inner = { (value: Value) in value.representation(depth: depth + 1) }
        switch self {
        case .string(let value): return Self.pythonStringLiteral(value)
        case .array(let values): return "[" + values.map(inner).joined(separator: ", ") + "]"
        case .tuple(let values):
            return values.count == 1 ? "(" + inner(values[0]) + ",)" : "(" + values.map(inner).joined(separator: ", ") + ")"
        case .object(let mapping):
            return "{" + mapping.pairs.map { Self.pythonStringLiteral($0.0) + ": " + inner($0.1) }.joined(separator: ", ") + "}"
        case .namespace(let namespace): return "<Namespace " + Value.object(namespace.members).representation(depth: depth + 1) + ">"
        case .callable(let callable): return "<function \(callable.name)>"
        default: return text
        }
    }

    /// Python's `repr(float)`: the shortest string that reads back as the same double.
    static func pythonFloat(_ value: Double) -> String {
        if value.isNaN { return "nan" }
        if value.isInfinite { return value < 0 ? "-inf" : "inf" }
        let swift = value.description
        // Swift writes 1e-05 and 1e+16 as Python does, but 5e-324 as "5e-324" and large whole
        // numbers below 1e16 with ".0", as Python does too; only the exponent form needs a digit check.
        guard let exponent = swift.firstIndex(where: { $0 == "e" || $0 == "E" }) else { return swift }
        var mantissa = String(swift[..<exponent])
        if mantissa.hasSuffix(".0") { mantissa.removeLast(2) }
        var power = String(swift[swift.index(after: exponent)...])
        let sign = power.hasPrefix("-") ? "-" : "+"
        power = power.trimmingPrefix { $0 == "-" || $0 == "+" }.description
        if power.count < 2 { power = "0" + power }
        return mantissa + "e" + sign + power
    }

    static func pythonStringLiteral(_ value: String) -> String {
        let quote: Unicode.Scalar = value.unicodeScalars.contains("'") && !value.unicodeScalars.contains("\"") ? "\"" : "'"
        var result = String(quote)
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result += "\\t"
            case quote: result += "\\" + String(quote)
            default:
                if isPrintable(scalar) {
                    result.unicodeScalars.append(scalar)
                } else if scalar.value < 0x100 {
                    result += "\\x" + hex(scalar.value, digits: 2)
                } else if scalar.value < 0x10000 {
                    result += "\\u" + hex(scalar.value, digits: 4)
                } else {
                    result += "\\U" + hex(scalar.value, digits: 8)
                }
            }
        }
        result.unicodeScalars.append(quote)
        return result
    }

    /// Python's `str.isprintable()` for one code point: what `repr` leaves unescaped.
    private static func isPrintable(_ scalar: Unicode.Scalar) -> Bool {
        if scalar == " " { return true }
        switch scalar.properties.generalCategory {
        case .control, .format, .surrogate, .privateUse, .unassigned, .lineSeparator, .paragraphSeparator, .spaceSeparator:
            return false
        default:
            return true
        }
    }

    static func hex(_ value: UInt32, digits: Int) -> String {
        let text = String(value, radix: 16)
        return String(repeating: "0", count: max(0, digits - text.count)) + text
    }
}
