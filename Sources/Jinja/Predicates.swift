/// Jinja's built-in tests (`x is defined`, `x is string`, `x is equalto y`, …).
enum Predicates {
    typealias Test = @Sendable (Value, Arguments) throws -> Bool

    static func named(_ name: String) -> Test? { table[name] }

    private static func argument(_ arguments: Arguments) -> Value { arguments.positional.first ?? .none }

    private static func compare(_ operation: String) -> Test {
        { value, arguments in try Operators.compare(operation, value, argument(arguments)) }
    }

    private static let table: [String: Test] = [
        "defined": { value, _ in !value.isUndefined },
        "undefined": { value, _ in value.isUndefined },
        "none": { value, _ in if case .none = value { true } else { false } },
        "boolean": { value, _ in if case .bool = value { true } else { false } },
        "true": { value, _ in if case .bool(true) = value { true } else { false } },
        "false": { value, _ in if case .bool(false) = value { true } else { false } },
        "integer": { value, _ in if case .int = value { true } else { false } },
        "float": { value, _ in if case .double = value { true } else { false } },
        "number": { value, _ in value.number != nil },
        "string": { value, _ in if case .string = value { true } else { false } },
        "mapping": { value, _ in if case .object = value { true } else { false } },
        "iterable": { value, _ in
            switch value {
            case .undefined, .string, .array, .tuple, .object: true
            default: false
            }
        },
        "sequence": { value, _ in
            switch value {
            case .undefined, .string, .array, .tuple, .object: true
            default: false
            }
        },
        "callable": { value, _ in if case .callable = value { true } else { false } },
        "sameas": { value, arguments in
            switch (value, argument(arguments)) {
            case (.none, .none): true
            case (.bool(let a), .bool(let b)): a == b
            // CPython keeps one object per small integer and per interned string.
            case (.int(let a), .int(let b)): a == b && (-5...256).contains(a)
            case (.string(let a), .string(let b)): a.equalsCodePoints(b)
            case (.namespace(let a), .namespace(let b)): a === b
            default: false
            }
        },
        "equalto": compare("=="), "eq": compare("=="), "==": compare("=="),
        "ne": compare("!="), "!=": compare("!="),
        "lt": compare("<"), "lessthan": compare("<"), "<": compare("<"),
        "le": compare("<="), "<=": compare("<="),
        "gt": compare(">"), "greaterthan": compare(">"), ">": compare(">"),
        "ge": compare(">="), ">=": compare(">="),
        "in": { value, arguments in try Operators.contains(argument(arguments), value) },
        "odd": { value, _ in
            guard let number = value.integer else { throw EvaluationError("odd: \(value.typeName) is not an integer") }
            return number % 2 != 0
        },
        "even": { value, _ in
            guard let number = value.integer else { throw EvaluationError("even: \(value.typeName) is not an integer") }
            return number % 2 == 0
        },
        "divisibleby": { value, arguments in
            guard let number = value.integer, let divisor = argument(arguments).integer, divisor != 0 else {
                throw EvaluationError("divisibleby needs integers")
            }
            return divisor == -1 || number % divisor == 0
        },
        "lower": { value, _ in value.text.equalsCodePoints(value.text.lowercased()) },
        "upper": { value, _ in value.text.equalsCodePoints(value.text.uppercased()) },
        "escaped": { _, _ in false },
    ]
}
