/// The globals a chat template may call: Jinja's (`range`, `namespace`, `dict`, `cycler`,
/// `joiner`) and transformers' (`raise_exception`, `strftime_now`).
enum Builtins {
    static func global(_ name: String, now: Double?) -> Value? {
        switch name {
        case "range":
            return .callable(Callable("range") { arguments in
                let bounds = try arguments.positional.map { value -> Int in
                    guard let number = value.integer else { throw EvaluationError("range() takes integers, not \(value.typeName)") }
                    return number
                }
                let (start, stop, step): (Int, Int, Int)
                switch bounds.count {
                case 1: (start, stop, step) = (0, bounds[0], 1)
                case 2: (start, stop, step) = (bounds[0], bounds[1], 1)
                case 3: (start, stop, step) = (bounds[0], bounds[1], bounds[2])
                default: throw EvaluationError("range expected 1 to 3 arguments, got \(bounds.count)")
                }
                guard step != 0 else { throw EvaluationError("range() arg 3 must not be zero") }
                let span = stop.subtractingReportingOverflow(start)
                guard !span.overflow, span.partialValue / step < 100_000 else { throw EvaluationError("range too big") }
                return .array(stride(from: start, to: stop, by: step).map { .int($0) })
            })
        case "namespace":
            return .callable(Callable("namespace") { arguments in
                var members = Mapping()
                for value in arguments.positional {
                    guard case .object(let mapping) = value else { throw EvaluationError("namespace() takes a dict or keywords") }
                    for (key, member) in mapping.pairs { members[key] = member }
                }
                for (key, value) in arguments.keywords { members[key] = value }
                return .namespace(Namespace(members))
            })
        case "dict":
            return .callable(Callable("dict") { arguments in
                var members = Mapping()
                if case .object(let mapping)? = arguments.positional.first {
                    for (key, value) in mapping.pairs { members[key] = value }
                }
                for (key, value) in arguments.keywords { members[key] = value }
                return .object(members)
            })
        case "raise_exception":
            return .callable(Callable("raise_exception") { arguments in
                throw TemplateError.raised(arguments.value(0, "message")?.text ?? "")
            })
        case "strftime_now":
            return .callable(Callable("strftime_now") { arguments in
                guard case .string(let format)? = arguments.value(0, "format") else {
                    throw EvaluationError("strftime_now() takes a format string")
                }
                return .string(Renderer.formatTime(format, now: now))
            })
        case "joiner":
            return .callable(Callable("joiner") { arguments in
                let separator = arguments.value(0, "sep")?.text ?? ", "
                let used = Namespace(Mapping())
                return .callable(Callable("joiner") { _ in
                    if used.members["used"] == nil {
                        used.members["used"] = .bool(true)
                        return .string("")
                    }
                    return .string(separator)
                })
            })
        case "cycler":
            return .callable(Callable("cycler") { arguments in
                let items = arguments.positional
                // A namespace, so that `current` read after `next()` is the new item, as in Jinja.
                let cycler = Namespace(Mapping([("current", items.first ?? Value.none)]))
                let state = Namespace(Mapping([("position", .int(0))]))
                cycler.members["next"] = .callable(Callable("next") { [weak cycler] _ in
                    guard !items.isEmpty, case .int(let position)? = state.members["position"] else { return .none }
                    state.members["position"] = .int((position + 1) % items.count)
                    cycler?.members["current"] = items[(position + 1) % items.count]
                    return items[position]
                })
                cycler.members["reset"] = .callable(Callable("reset") { [weak cycler] _ in
                    state.members["position"] = .int(0)
                    cycler?.members["current"] = items.first ?? Value.none
                    return .none
                })
                return .namespace(cycler)
            })
        default:
            return nil
        }
    }
}
