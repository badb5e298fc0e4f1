/// JSON in and out of template values as Python's `json` module does it: reading keeps key order
/// and the difference between `1` and `1.0`; writing is `json.dumps` (transformers' `tojson`).
public enum JSON {
    public struct Options {
        var indent: String?
        var itemSeparator: String
        var keySeparator: String
        var sortsKeys: Bool
        var ensuresASCII: Bool
    }

    /// `json.dumps(value, ensure_ascii=False, indent=indent, separators=separators, sort_keys=sort_keys)`.
    static func dumps(_ value: Value, indent: Value?, separators: Value?, sortsKeys: Bool, ensuresASCII: Bool) throws -> String {
        var indentText: String?
        switch indent {
        case .int(let count)?: indentText = String(repeating: " ", count: max(0, count))
        case .string(let text)?: indentText = text
        default: indentText = nil
        }
        var itemSeparator = indentText == nil ? ", " : ","
        var keySeparator = ": "
        if let pair = separators?.elements, pair.count == 2, case .string(let item) = pair[0], case .string(let key) = pair[1] {
            itemSeparator = item
            keySeparator = key
        }
        var output = ""
        let options = Options(indent: indentText, itemSeparator: itemSeparator, keySeparator: keySeparator, sortsKeys: sortsKeys,
                              ensuresASCII: ensuresASCII)
        try write(value, options, depth: 0, into: &output)
        return output
    }

    /// Deeper than this is a cycle through a namespace or a hostile document.
    static let maximumDepth = 512

    /// Compact `json.dumps`, as the server writes tool-call arguments.
    public static func string(_ value: Value) throws -> String {
        try dumps(value, indent: nil, separators: nil, sortsKeys: false, ensuresASCII: false)
    }

    private static func write(_ value: Value, _ options: Options, depth: Int, into output: inout String) throws {
        // A namespace can hold itself; Python's json.dumps says so instead of recursing forever.
        guard depth < maximumDepth else { throw EvaluationError("Circular reference detected (or nesting deeper than \(maximumDepth))") }
        switch value {
        case .none: output += "null"
        case .bool(let flag): output += flag ? "true" : "false"
        case .int(let number): output += String(number)
        case .double(let number):
            if number.isNaN { output += "NaN" } else if number.isInfinite { output += number < 0 ? "-Infinity" : "Infinity" }
            else { output += Value.pythonFloat(number) }
        case .string(let text): writeString(text, ensuresASCII: options.ensuresASCII, into: &output)
        case .array(let items), .tuple(let items):
            guard !items.isEmpty else {
                output += "[]"
                return
            }
            output += "["
            for (index, item) in items.enumerated() {
                if index > 0 { output += options.itemSeparator }
                newline(options, depth: depth + 1, into: &output)
                try write(item, options, depth: depth + 1, into: &output)
            }
            newline(options, depth: depth, into: &output)
            output += "]"
        case .object(let mapping):
            try writeObject(mapping, options, depth: depth, into: &output)
        case .namespace(let namespace):
            try writeObject(namespace.members, options, depth: depth, into: &output)
        case .undefined, .callable:
            throw EvaluationError("Object of type \(value.typeName) is not JSON serializable")
        }
    }

    private static func writeObject(_ mapping: Mapping, _ options: Options, depth: Int, into output: inout String) throws {
        guard !mapping.isEmpty else {
            output += "{}"
            return
        }
        output += "{"
        var pairs = mapping.pairs
        if options.sortsKeys { pairs.sort { $0.0.unicodeScalars.lexicographicallyPrecedes($1.0.unicodeScalars) } }
        for (index, (key, value)) in pairs.enumerated() {
            if index > 0 { output += options.itemSeparator }
            newline(options, depth: depth + 1, into: &output)
            writeString(key, ensuresASCII: options.ensuresASCII, into: &output)
            output += options.keySeparator
            try write(value, options, depth: depth + 1, into: &output)
        }
        newline(options, depth: depth, into: &output)
        output += "}"
    }

    private static func newline(_ options: Options, depth: Int, into output: inout String) {
        guard let indent = options.indent else { return }
        output += "\n" + String(repeating: indent, count: depth)
    }

    static func writeString(_ text: String, ensuresASCII: Bool, into output: inout String) {
        output += "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": output += "\\\""
            case "\\": output += "\\\\"
            case "\n": output += "\\n"
            case "\r": output += "\\r"
            case "\t": output += "\\t"
            case "\u{08}": output += "\\b"
            case "\u{0C}": output += "\\f"
            default:
                if scalar.value < 0x20 {
                    output += "\\u" + Value.hex(scalar.value, digits: 4)
                } else if ensuresASCII && scalar.value > 0x7E {
                    if scalar.value > 0xFFFF {
                        let offset = scalar.value - 0x10000
                        output += "\\u" + Value.hex(0xD800 + (offset >> 10), digits: 4)
                        output += "\\u" + Value.hex(0xDC00 + (offset & 0x3FF), digits: 4)
                    } else {
                        output += "\\u" + Value.hex(scalar.value, digits: 4)
                    }
                } else {
                    output.unicodeScalars.append(scalar)
                }
            }
        }
        output += "\""
    }

    /// Reads JSON text into a value (`json.loads`), or nil if it is not JSON.
    public static func parse(_ text: String) -> Value? {
        var reader = Reader(bytes: Array(text.utf8))
        guard let value = reader.value() else { return nil }
        reader.skipSpace()
        return reader.index == reader.bytes.count ? value : nil
    }

    private struct Reader {
        let bytes: [UInt8]
        var index = 0
        var depth = 0

        mutating func skipSpace() {
            while index < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[index]) { index += 1 }
        }

        private mutating func literal(_ word: String, _ value: Value) -> Value? {
            let expected = Array(word.utf8)
            guard index + expected.count <= bytes.count, bytes[index..<index + expected.count].elementsEqual(expected) else { return nil }
            index += expected.count
            return value
        }

        mutating func value() -> Value? {
            skipSpace()
            guard index < bytes.count, depth < maximumDepth else { return nil }
            switch bytes[index] {
            case UInt8(ascii: "n"): return literal("null", .none)
            case UInt8(ascii: "t"): return literal("true", .bool(true))
            case UInt8(ascii: "f"): return literal("false", .bool(false))
            case UInt8(ascii: "\""): return string().map { .string($0) }
            case UInt8(ascii: "["):
                index += 1
                depth += 1
                defer { depth -= 1 }
                var items: [Value] = []
                skipSpace()
                if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
                    index += 1
                    return .array(items)
                }
                while true {
                    guard let item = value() else { return nil }
                    items.append(item)
                    skipSpace()
                    guard index < bytes.count else { return nil }
                    if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
                    if bytes[index] == UInt8(ascii: "]") { index += 1; return .array(items) }
                    return nil
                }
            case UInt8(ascii: "{"):
                index += 1
                depth += 1
                defer { depth -= 1 }
                var mapping = Mapping()
                skipSpace()
                if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
                    index += 1
                    return .object(mapping)
                }
                while true {
                    skipSpace()
                    guard index < bytes.count, bytes[index] == UInt8(ascii: "\""), let key = string() else { return nil }
                    skipSpace()
                    guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { return nil }
                    index += 1
                    guard let member = value() else { return nil }
                    mapping[key] = member
                    skipSpace()
                    guard index < bytes.count else { return nil }
                    if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
                    if bytes[index] == UInt8(ascii: "}") { index += 1; return .object(mapping) }
                    return nil
                }
            default:
                return number()
            }
        }

        private mutating func number() -> Value? {
            let start = index
            var isFloat = false
            if index < bytes.count, bytes[index] == UInt8(ascii: "-") { index += 1 }
            while index < bytes.count {
                let byte = bytes[index]
                if (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) {
                    index += 1
                } else if [UInt8(ascii: "."), UInt8(ascii: "e"), UInt8(ascii: "E"), UInt8(ascii: "+"), UInt8(ascii: "-")].contains(byte) {
                    isFloat = true
                    index += 1
                } else {
                    break
                }
            }
            let text = String(decoding: bytes[start..<index], as: UTF8.self)
            guard !text.isEmpty, text != "-" else { return nil }
            if !isFloat, let integer = Int(text) { return .int(integer) }
            return Double(text).map { .double($0) }
        }

        private mutating func string() -> String? {
            index += 1
            var scalars = String.UnicodeScalarView()
            var pendingHigh: UInt32?
            // Python keeps a lone surrogate in its str; Swift cannot hold one, so it becomes U+FFFD.
            func flushSurrogate() {
                if pendingHigh != nil { scalars.append("\u{FFFD}") }
                pendingHigh = nil
            }
            while index < bytes.count {
                let byte = bytes[index]
                if byte == UInt8(ascii: "\"") {
                    index += 1
                    flushSurrogate()
                    return String(scalars)
                }
                if byte == UInt8(ascii: "\\") {
                    guard index + 1 < bytes.count else { return nil }
                    let escaped = bytes[index + 1]
                    index += 2
                    if escaped != UInt8(ascii: "u") { flushSurrogate() }
                    switch escaped {
                    case UInt8(ascii: "n"): scalars.append("\n")
                    case UInt8(ascii: "t"): scalars.append("\t")
                    case UInt8(ascii: "r"): scalars.append("\r")
                    case UInt8(ascii: "b"): scalars.append("\u{08}")
                    case UInt8(ascii: "f"): scalars.append("\u{0C}")
                    case UInt8(ascii: "/"), UInt8(ascii: "\\"), UInt8(ascii: "\""): scalars.append(Unicode.Scalar(escaped))
                    case UInt8(ascii: "u"):
                        guard index + 4 <= bytes.count,
                              let code = UInt32(String(decoding: bytes[index..<index + 4], as: UTF8.self), radix: 16) else { return nil }
                        index += 4
                        if (0xD800..<0xDC00).contains(code) {
                            flushSurrogate()
                            pendingHigh = code
                            continue
                        }
                        if (0xDC00..<0xE000).contains(code), let high = pendingHigh,
                           let scalar = Unicode.Scalar(0x10000 + ((high - 0xD800) << 10) + (code - 0xDC00)) {
                            pendingHigh = nil
                            scalars.append(scalar)
                            continue
                        }
                        flushSurrogate()
                        scalars.append(Unicode.Scalar(code) ?? "\u{FFFD}")
                        continue
                    default: return nil
                    }
                    continue
                }
                // A run of unescaped bytes: decode it as UTF-8 up to the next quote or backslash.
                let start = index
                while index < bytes.count, bytes[index] != UInt8(ascii: "\""), bytes[index] != UInt8(ascii: "\\") { index += 1 }
                flushSurrogate()
                scalars.append(contentsOf: String(decoding: bytes[start..<index], as: UTF8.self).unicodeScalars)
            }
            return nil
        }
    }
}
