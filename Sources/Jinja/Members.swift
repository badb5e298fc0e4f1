/// Member access as Jinja's sandbox does it: `a.b` tries the attribute (a method) before the item,
/// `a[b]` the item before the attribute; the methods of Python's `str`, `dict` and `list` that
/// templates call; and the immutable sandbox's refusal of those that modify.
enum Members {
    static func attribute(_ base: Value, _ name: String) throws -> Value {
        if case .undefined(let hint) = base { throw EvaluationError(hint) }
        if let method = try method(of: base, name) { return method }
        return item(base, key: name) ?? .undefined("'\(base.typeName) object' has no attribute '\(name)'")
    }

    static func item(_ base: Value, _ key: Value) throws -> Value {
        if case .undefined(let hint) = base { throw EvaluationError(hint) }
        if let position = key.integer {
            switch base {
            case .array(let items), .tuple(let items):
                let index = position < 0 ? position + items.count : position
                return items.indices.contains(index) ? items[index] : .undefined("list index out of range")
            case .string(let text):
                let scalars = Array(text.unicodeScalars)
                let index = position < 0 ? position + scalars.count : position
                return scalars.indices.contains(index) ? .string(String(scalars[index])) : .undefined("string index out of range")
            default:
                break
            }
        }
        switch (base, key) {
        case (_, .string(let name)):
            if let value = item(base, key: name) { return value }
            return try method(of: base, name) ?? .undefined("'\(base.typeName) object' has no attribute '\(name)'")
        default:
            return .undefined("'\(base.typeName) object' has no item \(key.representation)")
        }
    }

    private static func item(_ base: Value, key: String) -> Value? {
        switch base {
        case .object(let mapping): mapping[key]
        case .namespace(let namespace): namespace.members[key]
        default: nil
        }
    }

    static func slice(_ base: Value, start: Value?, stop: Value?, step: Value?) throws -> Value {
        func bound(_ value: Value?) throws -> Int? {
            guard let value else { return nil }
            switch value {
            case .none, .undefined: return nil
            default: break
            }
            guard let number = value.integer else { throw EvaluationError("slice indices must be integers or None") }
            return number
        }
        let step = try bound(step) ?? 1
        guard step != 0 else { throw EvaluationError("slice step cannot be zero") }
        func indices(_ count: Int) throws -> [Int] {
            func clamp(_ value: Int?, _ fallback: Int) -> Int {
                guard var index = value else { return fallback }
                if index < 0 { index += count }
                return step > 0 ? min(max(index, 0), count) : min(max(index, -1), count - 1)
            }
            let first = clamp(try bound(start), step > 0 ? 0 : count - 1)
            let last = clamp(try bound(stop), step > 0 ? count : -1)
            return Array(stride(from: first, to: last, by: step))
        }
        switch base {
        case .undefined(let hint): throw EvaluationError(hint)
        case .array(let items): return .array(try indices(items.count).map { items[$0] })
        case .tuple(let items): return .tuple(try indices(items.count).map { items[$0] })
        case .string(let text):
            let scalars = Array(text.unicodeScalars)
            var view = String.UnicodeScalarView()
            for index in try indices(scalars.count) { view.append(scalars[index]) }
            return .string(String(view))
        default: throw EvaluationError("'\(base.typeName)' object is not subscriptable")
        }
    }

    /// The bound method `name` of `base`, nil if it has none, or an error for a method the
    /// immutable sandbox refuses.
    private static func method(of base: Value, _ name: String) throws -> Value? {
        switch base {
        case .string(let text): return StringMethods.method(text, name)
        case .object(let mapping):
            switch name {
            case "items": return bound(name) { _ in .array(mapping.pairs.map { .tuple([.string($0.0), $0.1]) }) }
            case "keys": return bound(name) { _ in .array(mapping.keys.map { .string($0) }) }
            case "values": return bound(name) { _ in .array(mapping.pairs.map(\.1)) }
            case "get":
                return bound(name) { arguments in
                    guard case .string(let key)? = arguments.value(0, "key") else { return arguments.value(1, "default") ?? .none }
                    return mapping[key] ?? arguments.value(1, "default") ?? .none
                }
            case "copy": return bound(name) { _ in .object(mapping) }
            case "pop", "popitem", "setdefault", "update", "clear":
                throw EvaluationError("access to attribute '\(name)' of 'dict' object is unsafe.")
            default: return nil
            }
        case .array(let items), .tuple(let items):
            switch name {
            case "index":
                return bound(name) { arguments in
                    let needle = arguments.value(0, "value") ?? .none
                    guard let index = items.firstIndex(where: { $0.equals(needle) }) else {
                        throw EvaluationError("\(needle.representation) is not in list")
                    }
                    return .int(index)
                }
            case "count":
                return bound(name) { arguments in
                    let needle = arguments.value(0, "value") ?? .none
                    return .int(items.filter { $0.equals(needle) }.count)
                }
            case "copy": return bound(name) { _ in .array(items) }
            case "append", "extend", "insert", "pop", "remove", "reverse", "sort", "clear":
                throw EvaluationError("access to attribute '\(name)' of 'list' object is unsafe.")
            default: return nil
            }
        default:
            return nil
        }
    }

    static func bound(_ name: String, _ body: @escaping (Arguments) throws -> Value) -> Value {
        .callable(Callable(name, body))
    }
}
