/// A JSON parser that refuses what lenient parsers let through differently: a key given twice in
/// one object (Foundation keeps the first value, most parsers the last, so a proxy and this
/// server could read two different requests), nesting deeper than ``maxDepth``, and anything
/// RFC 8259 does not allow.
public enum StrictJSON {
    public static let maxDepth = 128

    public enum Failure: Error, Equatable {
        case syntax(String)
        case duplicateKey(String, path: String)
    }

    public static func parse(_ bytes: [UInt8]) throws(Failure) -> JSONValue {
        var parser = Parser(bytes: bytes)
        // A UTF-8 byte order mark, which some clients send and JSONDecoder skips.
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { parser.offset = 3 }
        parser.skipWhitespace()
        let value = try parser.value(depth: 0, path: "")
        parser.skipWhitespace()
        guard parser.offset == bytes.count else { throw .syntax("trailing characters at byte \(parser.offset)") }
        return value
    }

    private struct Parser {
        let bytes: [UInt8]
        var offset = 0

        mutating func skipWhitespace() {
            while offset < bytes.count {
                let byte = bytes[offset]
                guard byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D else { return }
                offset += 1
            }
        }

        private func fail(_ what: String) -> Failure { .syntax("\(what) at byte \(offset)") }

        /// The byte at `offset`, 0 at the end (a 0 byte is never valid JSON outside a string).
        private var current: UInt8 { offset < bytes.count ? bytes[offset] : 0 }

        mutating func value(depth: Int, path: String) throws(Failure) -> JSONValue {
            guard depth < StrictJSON.maxDepth else { throw fail("nesting deeper than \(StrictJSON.maxDepth)") }
            switch current {
            case UInt8(ascii: "{"): return try object(depth: depth, path: path)
            case UInt8(ascii: "["): return try array(depth: depth, path: path)
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "t"): try literal("true"); return .bool(true)
            case UInt8(ascii: "f"): try literal("false"); return .bool(false)
            case UInt8(ascii: "n"): try literal("null"); return .null
            case UInt8(ascii: "-"), 0x30...0x39: return try number()
            default: throw fail("a value was expected")
            }
        }

        private mutating func literal(_ word: String) throws(Failure) {
            let expected = Array(word.utf8)
            guard offset + expected.count <= bytes.count, bytes[offset..<(offset + expected.count)].elementsEqual(expected) else {
                throw fail("'\(word)' was expected")
            }
            offset += expected.count
        }

        private mutating func object(depth: Int, path: String) throws(Failure) -> JSONValue {
            offset += 1
            var members: [(String, JSONValue)] = []
            var keys: Set<String> = []
            skipWhitespace()
            if current == UInt8(ascii: "}") {
                offset += 1
                return .object(members)
            }
            while true {
                skipWhitespace()
                guard current == UInt8(ascii: "\"") else { throw fail("a key was expected") }
                let key = try string()
                let memberPath = path.isEmpty ? key : "\(path).\(key)"
                guard keys.insert(key).inserted else { throw .duplicateKey(key, path: memberPath) }
                skipWhitespace()
                guard current == UInt8(ascii: ":") else { throw fail("':' was expected") }
                offset += 1
                skipWhitespace()
                members.append((key, try value(depth: depth + 1, path: memberPath)))
                skipWhitespace()
                switch current {
                case UInt8(ascii: ","): offset += 1
                case UInt8(ascii: "}"):
                    offset += 1
                    return .object(members)
                default: throw fail("',' or '}' was expected")
                }
            }
        }

        private mutating func array(depth: Int, path: String) throws(Failure) -> JSONValue {
            offset += 1
            var elements: [JSONValue] = []
            skipWhitespace()
            if current == UInt8(ascii: "]") {
                offset += 1
                return .array(elements)
            }
            while true {
                skipWhitespace()
                elements.append(try value(depth: depth + 1, path: "\(path)[\(elements.count)]"))
                skipWhitespace()
                switch current {
                case UInt8(ascii: ","): offset += 1
                case UInt8(ascii: "]"):
                    offset += 1
                    return .array(elements)
                default: throw fail("',' or ']' was expected")
                }
            }
        }

        private mutating func number() throws(Failure) -> JSONValue {
            let start = offset
            if current == UInt8(ascii: "-") { offset += 1 }
            let first = current
            guard (0x30...0x39).contains(first) else { throw fail("a digit was expected") }
            offset += 1
            if first != UInt8(ascii: "0") { skipDigits() }
            var isInteger = true
            if current == UInt8(ascii: ".") {
                isInteger = false
                offset += 1
                guard try digits() else { throw fail("a digit was expected after '.'") }
            }
            if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
                isInteger = false
                offset += 1
                if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { offset += 1 }
                guard try digits() else { throw fail("a digit was expected in the exponent") }
            }
            let text = String(decoding: bytes[start..<offset], as: UTF8.self)
            if isInteger, let value = Int(text) { return .int(value) }
            return .number(Double(text) ?? .nan)
        }

        private mutating func skipDigits() {
            while (0x30...0x39).contains(current) { offset += 1 }
        }

        private mutating func digits() throws(Failure) -> Bool {
            let start = offset
            skipDigits()
            return offset > start
        }

        private mutating func string() throws(Failure) -> String {
            offset += 1
            var scalars = String.UnicodeScalarView()
            var plainStart = offset
            func flushPlain(_ end: Int) throws(Failure) {
                guard end > plainStart else { return }
                guard let piece = String(validating: bytes[plainStart..<end], as: UTF8.self) else {
                    throw .syntax("a string is not UTF-8 near byte \(plainStart)")
                }
                scalars.append(contentsOf: piece.unicodeScalars)
            }
            while true {
                guard offset < bytes.count else { throw fail("a string was not closed") }
                switch bytes[offset] {
                case UInt8(ascii: "\""):
                    try flushPlain(offset)
                    offset += 1
                    return String(scalars)
                case UInt8(ascii: "\\"):
                    try flushPlain(offset)
                    offset += 1
                    scalars.append(try escape())
                    plainStart = offset
                case 0..<0x20:
                    throw fail("a control character inside a string")
                default:
                    offset += 1
                }
            }
        }

        private mutating func escape() throws(Failure) -> Unicode.Scalar {
            guard offset < bytes.count else { throw fail("an escape was cut off") }
            let byte = bytes[offset]
            offset += 1
            switch byte {
            case UInt8(ascii: "\""): return "\""
            case UInt8(ascii: "\\"): return "\\"
            case UInt8(ascii: "/"): return "/"
            case UInt8(ascii: "b"): return "\u{08}"
            case UInt8(ascii: "f"): return "\u{0C}"
            case UInt8(ascii: "n"): return "\n"
            case UInt8(ascii: "r"): return "\r"
            case UInt8(ascii: "t"): return "\t"
            case UInt8(ascii: "u"):
                let high = try hexQuad()
                if (0xD800..<0xDC00).contains(high) {
                    guard current == UInt8(ascii: "\\"), offset + 1 < bytes.count, bytes[offset + 1] == UInt8(ascii: "u") else {
                        throw fail("a lone surrogate in a \\u escape")
                    }
                    offset += 2
                    let low = try hexQuad()
                    guard (0xDC00..<0xE000).contains(low) else { throw fail("a lone surrogate in a \\u escape") }
                    return Unicode.Scalar(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))!
                }
                guard let scalar = Unicode.Scalar(high) else { throw fail("a lone surrogate in a \\u escape") }
                return scalar
            default: throw fail("an unknown escape")
            }
        }

        private mutating func hexQuad() throws(Failure) -> UInt32 {
            guard offset + 4 <= bytes.count else { throw fail("a \\u escape was cut off") }
            var value: UInt32 = 0
            for _ in 0..<4 {
                let byte = bytes[offset]
                let digit: UInt32
                switch byte {
                case 0x30...0x39: digit = UInt32(byte - 0x30)
                case 0x41...0x46: digit = UInt32(byte - 0x41 + 10)
                case 0x61...0x66: digit = UInt32(byte - 0x61 + 10)
                default: throw fail("a hex digit was expected")
                }
                value = value << 4 | digit
                offset += 1
            }
            return value
        }
    }
}
