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
            var precision: Int?
            var spec = ""
            while let candidate = scalars.first, "0123456789.-+ #".unicodeScalars.contains(candidate) {
                spec.unicodeScalars.append(candidate)
                scalars.removeFirst()
            }
            if let dot = spec.firstIndex(of: ".") { precision = Int(spec[spec.index(after: dot)...]) }
            guard let conversion = scalars.popFirst() else { throw EvaluationError("incomplete format") }
            if conversion == "%" {
                result += "%"
                continue
            }
            guard next < values.count else { throw EvaluationError("not enough arguments for format string") }
            let value = values[next]
            next += 1
            switch conversion {
            case "s": result += value.text
            case "r": result += value.representation
            case "d", "i":
                guard let number = value.number else { throw EvaluationError("%d format: a real number is required, not \(value.typeName)") }
                result += String(Int(number.rounded(.towardZero)))
            case "f":
                guard let number = value.number else { throw EvaluationError("must be real number, not \(value.typeName)") }
                result += fixed(number, precision: precision ?? 6)
            default:
                throw EvaluationError("unsupported format character '\(conversion)'")
            }
        }
        guard next == values.count else { throw EvaluationError("not all arguments converted during string formatting") }
        return result
    }

    static func fixed(_ number: Double, precision: Int) -> String {
        let scale = pow(10, Double(precision))
        let rounded = (number * scale).rounded(.toNearestOrEven) / scale
        var text = String(format: rounded, precision: precision)
        if text == "-0" { text = "0" }
        return text
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

private extension String {
    /// `number` with exactly `precision` decimals (the value is already rounded to them).
    init(format number: Double, precision: Int) {
        let negative = number < 0
        let magnitude = abs(number)
        let whole = magnitude.rounded(.towardZero)
        var fraction = ((magnitude - whole) * pow(10, Double(precision))).rounded()
        var wholePart = whole
        if fraction >= pow(10, Double(precision)) {
            fraction = 0
            wholePart += 1
        }
        var text = String(Int(wholePart))
        if precision > 0 {
            let digits = String(Int(fraction))
            text += "." + String(repeating: "0", count: precision - digits.count) + digits
        }
        self = (negative && (wholePart != 0 || fraction != 0) ? "-" : "") + text
    }
}
