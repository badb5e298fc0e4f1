#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Jinja's built-in filters that chat templates use, and transformers' `tojson`.
enum Filters {
    typealias Filter = @Sendable (Value, Arguments, Renderer) throws -> Value

    static func named(_ name: String) -> Filter? { table[name] }

    private static let table: [String: Filter] = [
        "tojson": { value, arguments, _ in
            let sortsKeys = arguments.value(3, "sort_keys")?.isTrue ?? false
            let ensuresASCII = arguments.value(0, "ensure_ascii")?.isTrue ?? false
            return .string(try JSON.dumps(value, indent: arguments.value(1, "indent"), separators: arguments.value(2, "separators"),
                                          sortsKeys: sortsKeys, ensuresASCII: ensuresASCII))
        },
        "length": { value, _, _ in .int(try length(value)) },
        "count": { value, _, _ in .int(try length(value)) },
        "string": { value, _, _ in .string(value.text) },
        "safe": { value, _, _ in value },
        "trim": { value, arguments, _ in
            .string(StringMethods.strip(value.text, arguments.value(0, "chars"), leading: true, trailing: true))
        },
        "upper": { value, _, _ in .string(value.text.uppercased()) },
        "lower": { value, _, _ in .string(value.text.lowercased()) },
        "capitalize": { value, _, _ in .string(StringMethods.capitalize(value.text)) },
        "title": { value, _, _ in .string(StringMethods.titleFilter(value.text)) },
        "replace": { value, arguments, _ in
            let old = arguments.value(0, "old")?.text ?? "", new = arguments.value(1, "new")?.text ?? ""
            return .string(StringMethods.replace(value.text, old, new, count: arguments.value(2, "count")?.integer ?? -1))
        },
        "default": defaultValue,
        "d": defaultValue,
        "first": { value, _, renderer in
            try renderer.iterate(value).first ?? .undefined("No first item, sequence was empty.")
        },
        "last": { value, _, renderer in
            try renderer.iterate(value).last ?? .undefined("No last item, sequence was empty.")
        },
        "list": { value, _, renderer in .array(try renderer.iterate(value)) },
        "items": { value, _, _ in
            switch value {
            case .undefined: return .array([])
            case .object(let mapping): return .array(mapping.pairs.map { .tuple([.string($0.0), $0.1]) })
            default: throw EvaluationError("items filter: \(value.typeName) is not a mapping")
            }
        },
        "dictsort": { value, arguments, _ in
            guard case .object(let mapping) = value else { throw EvaluationError("dictsort: \(value.typeName) is not a mapping") }
            let byValue = arguments.value(1, "by")?.text == "value"
            let caseSensitive = arguments.value(0, "case_sensitive")?.isTrue ?? false
            var pairs = mapping.pairs.map { pair in (Value.tuple([.string(pair.0), pair.1]), sortKey(byValue ? pair.1 : .string(pair.0), caseSensitive)) }
            try sortStable(&pairs, reverse: arguments.value(2, "reverse")?.isTrue ?? false)
            return .array(pairs.map(\.0))
        },
        "join": { value, arguments, renderer in
            let separator = arguments.value(0, "d")?.text ?? ""
            var items = try renderer.iterate(value)
            if let attribute = arguments.value(1, "attribute") { items = try items.map { try path($0, attribute) } }
            return .string(items.map(\.text).joined(separator: separator))
        },
        "map": { value, arguments, renderer in
            let items = try renderer.iterate(value)
            if let attribute = arguments.keywords.first(where: { $0.0 == "attribute" })?.1 {
                let fallback = arguments.keywords.first { $0.0 == "default" }?.1
                return .array(try items.map { item in
                    let found = try path(item, attribute)
                    if found.isUndefined, let fallback { return fallback }
                    return found
                })
            }
            guard case .string(let filter)? = arguments.positional.first else { throw EvaluationError("map needs a filter name or attribute=") }
            let rest = Arguments(Array(arguments.positional.dropFirst()), keywords: arguments.keywords)
            return .array(try items.map { try renderer.applyFilter(filter, $0, rest) })
        },
        "select": { value, arguments, renderer in .array(try select(value, arguments, renderer, attribute: false, keeps: true)) },
        "reject": { value, arguments, renderer in .array(try select(value, arguments, renderer, attribute: false, keeps: false)) },
        "selectattr": { value, arguments, renderer in .array(try select(value, arguments, renderer, attribute: true, keeps: true)) },
        "rejectattr": { value, arguments, renderer in .array(try select(value, arguments, renderer, attribute: true, keeps: false)) },
        "unique": { value, arguments, renderer in
            let caseSensitive = arguments.value(0, "case_sensitive")?.isTrue ?? false
            var seen: [Value] = []
            var result: [Value] = []
            for item in try renderer.iterate(value) {
                let key = sortKey(try arguments.value(1, "attribute").map { try path(item, $0) } ?? item, caseSensitive)
                if !seen.contains(where: { $0.equals(key) }) {
                    seen.append(key)
                    result.append(item)
                }
            }
            return .array(result)
        },
        "sort": { value, arguments, renderer in
            let reverse = arguments.value(0, "reverse")?.isTrue ?? false
            let caseSensitive = arguments.value(1, "case_sensitive")?.isTrue ?? false
            let attribute = arguments.value(2, "attribute")
            let items = try renderer.iterate(value)
            var indexed = try items.map { item in (item, sortKey(try attribute.map { try path(item, $0) } ?? item, caseSensitive)) }
            try sortStable(&indexed, reverse: reverse)
            return .array(indexed.map(\.0))
        },
        "reverse": { value, _, renderer in
            if case .string(let text) = value { return .string(String(String.UnicodeScalarView(text.unicodeScalars.reversed()))) }
            return .array(try renderer.iterate(value).reversed())
        },
        "int": { value, arguments, _ in
            let fallback = arguments.value(0, "default") ?? .int(0)
            switch value {
            case .int, .bool: return .int(value.integer!)
            case .double(let number): return number.isFinite ? .int(try Operators.truncated(number)) : fallback
            case .string(let text):
                let trimmed = StringMethods.strip(text, nil, leading: true, trailing: true)
                if let number = Int(trimmed) { return .int(number) }
                if let number = Double(trimmed), number.isFinite { return .int(try Operators.truncated(number)) }
                return fallback
            default: return fallback
            }
        },
        "float": { value, arguments, _ in
            let fallback = arguments.value(0, "default") ?? .double(0)
            switch value {
            case .int, .bool, .double: return .double(value.number!)
            case .string(let text): return Double(StringMethods.strip(text, nil, leading: true, trailing: true)).map { .double($0) } ?? fallback
            default: return fallback
            }
        },
        "abs": { value, _, _ in
            switch value {
            case .int(let number): return .int(abs(number))
            case .double(let number): return .double(abs(number))
            case .bool(let flag): return .int(flag ? 1 : 0)
            default: throw EvaluationError("bad operand type for abs(): '\(value.typeName)'")
            }
        },
        "round": { value, arguments, _ in
            guard let number = value.number else { throw EvaluationError("round: \(value.typeName) is not a number") }
            let precision = arguments.value(0, "precision")?.integer ?? 0
            let method = arguments.value(1, "method")?.text ?? "common"
            let scale = pow(10, Double(precision))
            // Python's `round` (Jinja's "common") rounds half to even.
            let rule: FloatingPointRoundingRule = method == "ceil" ? .up : method == "floor" ? .down : .toNearestOrEven
            return .double((number * scale).rounded(rule) / scale)
        },
        "sum": { value, arguments, renderer in
            var total = arguments.value(1, "start") ?? .int(0)
            for item in try renderer.iterate(value) {
                total = try Operators.binary("+", total, try arguments.value(0, "attribute").map { try path(item, $0) } ?? item)
            }
            return total
        },
        "min": { value, arguments, renderer in try extreme(value, arguments, renderer, wantsLargest: false) },
        "max": { value, arguments, renderer in try extreme(value, arguments, renderer, wantsLargest: true) },
        "indent": { value, arguments, _ in
            let indentation: String
            if case .string(let text)? = arguments.value(0, "width") { indentation = text }
            else { indentation = String(repeating: " ", count: arguments.value(0, "width")?.integer ?? 4) }
            let indentsFirst = arguments.value(1, "first")?.isTrue ?? false
            let indentsBlank = arguments.value(2, "blank")?.isTrue ?? false
            var lines = (value.text + "\n").split(omittingEmptySubsequences: false) { $0.isNewline }.map(String.init)
            lines.removeLast()
            var result: String
            if indentsBlank {
                result = lines.joined(separator: "\n" + indentation)
            } else {
                result = lines.isEmpty ? "" : lines[0]
                if lines.count > 1 {
                    result += "\n" + lines.dropFirst().map { $0.isEmpty ? $0 : indentation + $0 }.joined(separator: "\n")
                }
            }
            return .string(indentsFirst ? indentation + result : result)
        },
        "wordcount": { value, _, _ in .int(value.text.split { $0.isWhitespace || $0.isPunctuation }.count) },
        "escape": escape,
        "e": escape,
        "forceescape": escape,
        "format": { value, arguments, _ in .string(try Formatting.percent(value.text, arguments.positional)) },
        "pprint": { value, _, _ in .string(value.representation) },
        "attr": { value, arguments, _ in try Members.attribute(value, arguments.value(0, "name")?.text ?? "") },
        "batch": { value, arguments, renderer in
            guard let size = arguments.value(0, "linecount")?.integer, size > 0 else { throw EvaluationError("batch needs a positive size") }
            let items = try renderer.iterate(value)
            var batches: [Value] = []
            var index = 0
            while index < items.count {
                var batch = Array(items[index..<min(index + size, items.count)])
                if let fill = arguments.value(1, "fill_with") { while batch.count < size { batch.append(fill) } }
                batches.append(.array(batch))
                index += size
            }
            return .array(batches)
        },
    ]

    private static let defaultValue: Filter = { value, arguments, _ in
        let fallback = arguments.value(0, "default_value") ?? .string("")
        let usesTruth = arguments.value(1, "boolean")?.isTrue ?? false
        if value.isUndefined || (usesTruth && !value.isTrue) { return fallback }
        return value
    }

    private static let escape: Filter = { value, _, _ in
        var result = ""
        for character in value.text {
            switch character {
            case "&": result += "&amp;"
            case "<": result += "&lt;"
            case ">": result += "&gt;"
            case "\"": result += "&#34;"
            case "'": result += "&#39;"
            default: result.append(character)
            }
        }
        return .string(result)
    }

    static func length(_ value: Value) throws -> Int {
        switch value {
        case .undefined: 0
        case .string(let text): text.unicodeScalars.count
        case .array(let items), .tuple(let items): items.count
        case .object(let mapping): mapping.count
        case .namespace(let namespace): namespace.members.count
        default: throw EvaluationError("object of type '\(value.typeName)' has no len()")
        }
    }

    /// `item.a.b` for an attribute argument `"a.b"` (integers index lists), as Jinja's `make_attrgetter`.
    static func path(_ item: Value, _ attribute: Value) throws -> Value {
        if let index = attribute.integer { return try Members.item(item, .int(index)) }
        var current = item
        for part in attribute.text.split(separator: ".", omittingEmptySubsequences: false) {
            let key: Value = Int(part).map { .int($0) } ?? .string(String(part))
            if current.isUndefined { return current }
            current = try Members.item(current, key)
        }
        return current
    }

    private static func sortKey(_ value: Value, _ caseSensitive: Bool) -> Value {
        if !caseSensitive, case .string(let text) = value { return .string(text.lowercased()) }
        return value
    }

    /// Python's sort is stable in both directions: `reverse` keeps equal items in their order.
    private static func sortStable(_ items: inout [(Value, Value)], reverse: Bool) throws {
        try items.sort { try Operators.compare(reverse ? ">" : "<", $0.1, $1.1) }
    }

    private static func extreme(_ value: Value, _ arguments: Arguments, _ renderer: Renderer, wantsLargest: Bool) throws -> Value {
        let caseSensitive = arguments.value(0, "case_sensitive")?.isTrue ?? false
        let attribute = arguments.value(1, "attribute")
        var best: (Value, Value)?
        for item in try renderer.iterate(value) {
            let key = sortKey(try attribute.map { try path(item, $0) } ?? item, caseSensitive)
            if let current = best {
                if try Operators.compare(wantsLargest ? ">" : "<", key, current.1) { best = (item, key) }
            } else {
                best = (item, key)
            }
        }
        return best?.0 ?? .undefined("No aggregated item, sequence was empty.")
    }

    /// `select`/`reject` (a test on each item) and `selectattr`/`rejectattr` (on an attribute of it).
    private static func select(_ value: Value, _ arguments: Arguments, _ renderer: Renderer, attribute: Bool, keeps: Bool) throws -> [Value] {
        var positional = arguments.positional
        var attributeName: Value?
        if attribute {
            guard !positional.isEmpty else { throw EvaluationError("selectattr needs an attribute") }
            attributeName = positional.removeFirst()
        }
        let testName: String? = positional.isEmpty ? nil : positional.removeFirst().text
        let testArguments = Arguments(positional, keywords: arguments.keywords)
        return try renderer.iterate(value).filter { item in
            let subject = try attributeName.map { try path(item, $0) } ?? item
            let passes = try testName.map { try renderer.applyTest($0, subject, testArguments) } ?? subject.isTrue
            return passes == keeps
        }
    }
}
