/// A constant written in the template.
enum Constant: Sendable {
    case none
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)

    var value: Value {
        switch self {
        case .none: .none
        case .bool(let value): .bool(value)
        case .int(let value): .int(value)
        case .double(let value): .double(value)
        case .string(let value): .string(value)
        }
    }
}

/// A call's written arguments.
struct ArgumentList: Sendable {
    var positional: [Expression] = []
    var keywords: [(String, Expression)] = []
}

indirect enum Expression: Sendable {
    case constant(Constant)
    case name(String)
    case list([Expression])
    case tuple([Expression])
    case dictionary([(Expression, Expression)])
    case attribute(Expression, String)
    case index(Expression, Expression)
    case slice(Expression, start: Expression?, stop: Expression?, step: Expression?)
    case call(Expression, ArgumentList)
    case filter(Expression, name: String, ArgumentList)
    case test(Expression, name: String, ArgumentList, negated: Bool)
    case negate(Expression)
    case plus(Expression)
    case not(Expression)
    case and(Expression, Expression)
    case or(Expression, Expression)
    case binary(String, Expression, Expression)
    case compare(Expression, [(String, Expression)])
    case conditional(test: Expression, then: Expression, otherwise: Expression?)
}

/// A statement: the template is a list of them.
struct Statement: Sendable {
    indirect enum Kind: Sendable {
        case text(String)
        case output(Expression)
        case conditional([(Expression, [Statement])], otherwise: [Statement])
        case loop(Loop)
        case assign(targets: [AssignTarget], Expression)
        case assignBlock(name: String, filters: [(String, ArgumentList)], body: [Statement])
        case macro(Macro)
        case call(macro: Expression, ArgumentList, callerParameters: [Parameter], body: [Statement])
        case filterBlock(filters: [(String, ArgumentList)], body: [Statement])
        case scope(assignments: [(String, Expression)], body: [Statement])
        case breakLoop
        case continueLoop
    }

    let kind: Kind
    let line: Int
}

enum AssignTarget: Sendable {
    case name(String)
    case member(String, String)
}

struct Loop: Sendable {
    let targets: [String]
    let iterable: Expression
    let condition: Expression?
    let body: [Statement]
    let otherwise: [Statement]
    let isRecursive: Bool
    /// Whether the body names `loop`; building the loop object is most of an iteration's cost.
    let usesLoop: Bool
}

struct Parameter: Sendable {
    let name: String
    let defaultValue: Expression?
}

struct Macro: Sendable {
    let name: String
    let parameters: [Parameter]
    let body: [Statement]
}
