/// The methods of Python's `str` that chat templates call, over code points as Python counts them.
enum StringMethods {
    /// Python's `str.isspace` set.
    static func isSpace(_ scalar: Unicode.Scalar) -> Bool {
        scalar.properties.isWhitespace || (0x1C...0x1F).contains(scalar.value)
    }

    static func strip(_ text: String, _ characters: Value?, leading: Bool, trailing: Bool) -> String {
        let scalars = Array(text.unicodeScalars)
        let set: Set<Unicode.Scalar>?
        if case .string(let chars)? = characters { set = Set(chars.unicodeScalars) } else { set = nil }
        func strips(_ scalar: Unicode.Scalar) -> Bool { set?.contains(scalar) ?? isSpace(scalar) }
        var start = 0, end = scalars.count
        if leading { while start < end, strips(scalars[start]) { start += 1 } }
        if trailing { while end > start, strips(scalars[end - 1]) { end -= 1 } }
        var view = String.UnicodeScalarView()
        view.append(contentsOf: scalars[start..<end])
        return String(view)
    }

    /// Python's `str.split(sep=None, maxsplit=-1)`.
    static func split(_ text: String, separator: String?, limit: Int) -> [String] {
        guard let separator else {
            let scalars = Array(text.unicodeScalars)
            var parts: [String] = []
            var index = 0
            while true {
                while index < scalars.count, isSpace(scalars[index]) { index += 1 }
                guard index < scalars.count else { return parts }
                if limit >= 0, parts.count == limit {
                    parts.append(string(scalars[index...]))
                    return parts
                }
                let start = index
                while index < scalars.count, !isSpace(scalars[index]) { index += 1 }
                parts.append(string(scalars[start..<index]))
            }
        }
        let scalars = Array(text.unicodeScalars)
        var parts: [String] = []
        var start = 0
        for position in occurrences(Array(separator.unicodeScalars), in: scalars) {
            if limit >= 0, parts.count == limit { break }
            parts.append(string(scalars[start..<position]))
            start = position + separator.unicodeScalars.count
        }
        parts.append(string(scalars[start...]))
        return parts
    }

    /// Python's `str.title()`: a cased letter after a cased letter is lowered, any other is
    /// title-cased, so "they're" becomes "They'Re".
    static func title(_ text: String) -> String {
        var result = String.UnicodeScalarView()
        var previousCased = false
        for scalar in text.unicodeScalars {
            let mapping = previousCased ? scalar.properties.lowercaseMapping : scalar.properties.titlecaseMapping
            result.append(contentsOf: mapping.unicodeScalars)
            previousCased = scalar.properties.isCased
        }
        return String(result)
    }

    /// Jinja's `title` filter: words begin after `-`, whitespace and opening brackets, and each
    /// word is its first character upper-cased and the rest lowered, so "they're" stays "They're".
    static func titleFilter(_ text: String) -> String {
        var result = String.UnicodeScalarView()
        var wordStart = true
        for scalar in text.unicodeScalars {
            let separates = isSpace(scalar) || "-({[<".unicodeScalars.contains(scalar)
            if separates {
                result.append(scalar)
            } else {
                let mapping = wordStart ? scalar.properties.uppercaseMapping : scalar.properties.lowercaseMapping
                result.append(contentsOf: mapping.unicodeScalars)
            }
            wordStart = separates
        }
        return String(result)
    }

    static func capitalize(_ text: String) -> String {
        guard let first = text.unicodeScalars.first else { return text }
        return String(first).uppercased() + String(text.unicodeScalars.dropFirst()).lowercased()
    }

    private static func prefixes(_ value: Value?) throws -> [String] {
        switch value {
        case .string(let text)?: return [text]
        case .tuple(let items)?:
            return try items.map { item in
                guard case .string(let text) = item else { throw EvaluationError("tuple for startswith must only contain str") }
                return text
            }
        default: throw EvaluationError("startswith/endswith first arg must be str or a tuple of str")
        }
    }

    private static func argument(_ value: Value?, _ method: String) throws -> String {
        guard case .string(let text)? = value else {
            throw EvaluationError("\(method)() argument must be str, not \(value?.typeName ?? "nothing")")
        }
        return text
    }

    static func method(_ text: String, _ name: String) -> Value? {
        let body: ((Arguments) throws -> Value)?
        switch name {
        case "strip": body = { .string(strip(text, $0.value(0, "chars"), leading: true, trailing: true)) }
        case "lstrip": body = { .string(strip(text, $0.value(0, "chars"), leading: true, trailing: false)) }
        case "rstrip": body = { .string(strip(text, $0.value(0, "chars"), leading: false, trailing: true)) }
        case "split", "rsplit":
            body = { arguments in
                var separator: String?
                if case .string(let given)? = arguments.value(0, "sep") {
                    guard !given.isEmpty else { throw EvaluationError("empty separator") }
                    separator = given
                }
                let limit = arguments.value(1, "maxsplit")?.integer ?? -1
                if name == "rsplit", limit >= 0 {
                    let reversed = String(String.UnicodeScalarView(text.unicodeScalars.reversed()))
                    let reversedSeparator = separator.map { String(String.UnicodeScalarView($0.unicodeScalars.reversed())) }
                    return .array(split(reversed, separator: reversedSeparator, limit: limit).reversed().map {
                        .string(String(String.UnicodeScalarView($0.unicodeScalars.reversed())))
                    })
                }
                return .array(split(text, separator: separator, limit: limit).map { .string($0) })
            }
        case "splitlines":
            body = { _ in
                .array(splitLines(text).map { .string($0) })
            }
        case "startswith":
            body = { arguments in .bool(try prefixes(arguments.value(0, "prefix")).contains { text.startsWithCodePoints($0) }) }
        case "endswith":
            body = { arguments in .bool(try prefixes(arguments.value(0, "suffix")).contains { text.endsWithCodePoints($0) }) }
        case "upper": body = { _ in .string(text.uppercased()) }
        case "lower": body = { _ in .string(text.lowercased()) }
        case "title": body = { _ in .string(title(text)) }
        case "capitalize": body = { _ in .string(capitalize(text)) }
        case "replace":
            body = { arguments in
                let old = try argument(arguments.value(0, "old"), name), new = try argument(arguments.value(1, "new"), name)
                let count = arguments.value(2, "count")?.integer ?? -1
                return .string(replace(text, old, new, count: count))
            }
        case "find", "rfind", "index", "rindex", "count":
            body = { arguments in
                let part = try argument(arguments.value(0, "sub"), name)
                let scalars = Array(text.unicodeScalars), needle = Array(part.unicodeScalars)
                let positions = occurrences(needle, in: scalars)
                if name == "count" { return .int(needle.isEmpty ? scalars.count + 1 : positions.count) }
                let found = name.hasPrefix("r") ? positions.last : positions.first
                if let found { return .int(found) }
                if name.hasSuffix("index") { throw EvaluationError("substring not found") }
                return .int(-1)
            }
        case "join":
            body = { arguments in
                guard let items = arguments.value(0, "iterable")?.elements else {
                    throw EvaluationError("can only join an iterable")
                }
                return .string(try items.map { item in
                    guard case .string(let piece) = item else { throw EvaluationError("sequence item: expected str instance, \(item.typeName) found") }
                    return piece
                }.joined(separator: text))
            }
        case "removeprefix":
            body = { arguments in
                let prefix = try argument(arguments.value(0, "prefix"), name)
                return .string(text.startsWithCodePoints(prefix) ? String(String.UnicodeScalarView(text.unicodeScalars.dropFirst(prefix.unicodeScalars.count))) : text)
            }
        case "removesuffix":
            body = { arguments in
                let suffix = try argument(arguments.value(0, "suffix"), name)
                return .string(text.endsWithCodePoints(suffix) ? String(String.UnicodeScalarView(text.unicodeScalars.dropLast(suffix.unicodeScalars.count))) : text)
            }
        case "isdigit", "isnumeric", "isdecimal":
            body = { _ in .bool(!text.isEmpty && text.unicodeScalars.allSatisfy { $0.properties.numericType != nil }) }
        case "isalpha": body = { _ in .bool(!text.isEmpty && text.unicodeScalars.allSatisfy(\.properties.isAlphabetic)) }
        case "isalnum":
            body = { _ in .bool(!text.isEmpty && text.unicodeScalars.allSatisfy { $0.properties.isAlphabetic || $0.properties.numericType != nil }) }
        case "isspace": body = { _ in .bool(!text.isEmpty && text.unicodeScalars.allSatisfy(isSpace)) }
        case "isupper": body = { _ in .bool(text.contains { $0.isCased } && text.equalsCodePoints(text.uppercased())) }
        case "islower": body = { _ in .bool(text.contains { $0.isCased } && text.equalsCodePoints(text.lowercased())) }
        case "format": body = { arguments in .string(try Formatting.braces(text, arguments)) }
        default: body = nil
        }
        return body.map { .callable(Callable(name, $0)) }
    }

    /// Python's `str.splitlines()`: its line boundaries are more than `\n`, and `\r\n` is one.
    static func splitLines(_ text: String) -> [String] {
        let scalars = Array(text.unicodeScalars)
        var lines: [String] = []
        var start = 0, index = 0
        while index < scalars.count {
            let value = scalars[index].value
            if [0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x85, 0x2028, 0x2029].contains(value) {
                lines.append(string(scalars[start..<index]))
                index += value == 0x0D && index + 1 < scalars.count && scalars[index + 1] == "\n" ? 2 : 1
                start = index
            } else {
                index += 1
            }
        }
        if start < scalars.count { lines.append(string(scalars[start...])) }
        return lines
    }

    static func replace(_ text: String, _ old: String, _ new: String, count: Int) -> String {
        if old.isEmpty {
            guard count != 0 else { return text }
            var result = new
            var done = 1
            for scalar in text.unicodeScalars {
                result.unicodeScalars.append(scalar)
                if count < 0 || done < count {
                    result += new
                    done += 1
                }
            }
            return result
        }
        let scalars = Array(text.unicodeScalars)
        var result = ""
        var start = 0
        var done = 0
        for position in occurrences(Array(old.unicodeScalars), in: scalars) {
            if count >= 0, done == count { break }
            result += string(scalars[start..<position]) + new
            start = position + old.unicodeScalars.count
            done += 1
        }
        return result + string(scalars[start...])
    }

    /// The starts of the non-overlapping occurrences of `needle`, left to right, as Python finds them.
    static func occurrences(_ needle: [Unicode.Scalar], in scalars: [Unicode.Scalar]) -> [Int] {
        var positions: [Int] = []
        var index = 0
        while index + needle.count <= scalars.count {
            if scalars[index..<index + needle.count].elementsEqual(needle) {
                positions.append(index)
                index += max(needle.count, 1)
            } else {
                index += 1
            }
        }
        return positions
    }

    static func string(_ scalars: ArraySlice<Unicode.Scalar>) -> String {
        var view = String.UnicodeScalarView()
        view.append(contentsOf: scalars)
        return String(view)
    }
}
