#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Python's string formatting, as far as templates use it: `"%s" % x` (and the `format` filter)
/// and `"{}".format(x)`.
enum Formatting {
    static func percent(_ format: String, _ values: [Value]) throws -> String {
        var result = ""
        var scalars = Array(format.unicodeScalars)[...]
        var next = 0
        while let scalar = scalars.popFirst() {
            guard scalar == "%" else {
                result.unicodeScalars.append(scalar)
                continue
            }
            var flags = "", width = "", precision: String?
            while let candidate = scalars.first, "-+ #0".unicodeScalars.contains(candidate) {
                flags.unicodeScalars.append(candidate)
                scalars.removeFirst()
            }
            while let candidate = scalars.first, ("0"..."9").contains(candidate) {
                width.unicodeScalars.append(candidate)
                scalars.removeFirst()
            }
            if scalars.first == "." {
                scalars.removeFirst()
                var digits = ""
                while let candidate = scalars.first, ("0"..."9").contains(candidate) {
                    digits.unicodeScalars.append(candidate)
                    scalars.removeFirst()
                }
                precision = digits
            }
            guard let conversion = scalars.popFirst() else { throw EvaluationError("incomplete format") }
            if conversion == "%" {
                result += "%"
                continue
            }
            guard width.count <= 3, (precision?.count ?? 0) <= 3 else {
                throw EvaluationError("format: a width or precision over 999 is not a prompt")
            }
            guard next < values.count else { throw EvaluationError("not enough arguments for format string") }
            let value = values[next]
            next += 1
            switch conversion {
            case "s", "r":
                var text = Array((conversion == "s" ? value.text : value.representation).unicodeScalars)
                if let precision, let limit = Int(precision), limit < text.count { text.removeLast(text.count - limit) }
                let padding = String(repeating: " ", count: max(0, (Int(width) ?? 0) - text.count))
                let body = String(String.UnicodeScalarView(text))
                result += flags.contains("-") ? body + padding : padding + body
            case "d", "i":
                guard let number = value.number else { throw EvaluationError("%d format: a real number is required, not \(value.typeName)") }
                let integer = try value.integer ?? Operators.truncated(number)
                result += printf("%" + flags + width + "lld", Int64(integer))
            case "f", "F", "e", "E", "g", "G":
                guard let number = value.number else { throw EvaluationError("must be real number, not \(value.typeName)") }
                let spec = "%" + flags + width + (precision.map { "." + $0 } ?? "") + String(conversion)
                result += printf(spec, number)
            case "x", "X", "o":
                guard let integer = value.integer else {
                    throw EvaluationError("%\(conversion) format: an integer is required, not \(value.typeName)")
                }
                let magnitude = printf("%" + flags.filter { $0 != "+" && $0 != " " } + "ll" + String(conversion), UInt64(integer.magnitude))
                let sign = integer < 0 ? "-" : flags.contains("+") ? "+" : flags.contains(" ") ? " " : ""
                let body = sign + magnitude
                let padding = String(repeating: flags.contains("0") && !flags.contains("-") ? "0" : " ",
                                     count: max(0, (Int(width) ?? 0) - body.count))
                if flags.contains("-") {
                    result += body + padding
                } else if padding.hasPrefix("0") {
                    result += sign + padding + magnitude
                } else {
                    result += padding + body
                }
            default:
                throw EvaluationError("unsupported format character '\(conversion)'")
            }
        }
        guard next == values.count else { throw EvaluationError("not all arguments converted during string formatting") }
        return result
    }

    /// Python prints `inf` and `nan` as C does, and rounds `%.Nf` from the exact binary value as
    /// glibc does, so C's formatter is the reference implementation here.
    private static func printf(_ spec: String, _ argument: any CVarArg) -> String {
        var buffer = [CChar](repeating: 0, count: 128)
        while true {
            let count = Int(withVaList([argument]) { list in
                buffer.withUnsafeMutableBufferPointer { vsnprintf($0.baseAddress, $0.count, spec, list) }
            })
            guard count >= 0 else { return "" }
            if count < buffer.count { return String(decoding: buffer.prefix(count).map { UInt8(bitPattern: $0) }, as: UTF8.self) }
            buffer = [CChar](repeating: 0, count: count + 1)
        }
    }

    static func braces(_ format: String, _ arguments: Arguments) throws -> String {
        var result = ""
        var scalars = Array(format.unicodeScalars)[...]
        var next = 0
        while let scalar = scalars.popFirst() {
            if scalar == "{" {
                if scalars.first == "{" {
                    scalars.removeFirst()
                    result += "{"
                    continue
                }
                var field = ""
                while let candidate = scalars.popFirst(), candidate != "}" { field.unicodeScalars.append(candidate) }
                let value: Value?
                if field.isEmpty {
                    value = next < arguments.positional.count ? arguments.positional[next] : nil
                    next += 1
                } else if let index = Int(field) {
                    value = index < arguments.positional.count ? arguments.positional[index] : nil
                } else {
                    value = arguments.keywords.first { $0.0 == field }?.1
                }
                guard let value else { throw EvaluationError("format: no argument for '{\(field)}'") }
                result += value.text
            } else if scalar == "}" {
                if scalars.first == "}" { scalars.removeFirst() }
                result += "}"
            } else {
                result.unicodeScalars.append(scalar)
            }
        }
        return result
    }
}
