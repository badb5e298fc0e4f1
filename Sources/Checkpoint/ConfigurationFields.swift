public import Foundation

/// Typed reads of a JSON object from a Hugging Face file, with errors that name the file and field.
///
/// Several fields have two spellings: the one published with the models (transformers 4) and the
/// one transformers 5 writes. Readers take every spelling, first match wins.
public struct ConfigurationFields: Sendable {
    /// A JSON value as the file holds it (`JSONSerialization`'s, made Sendable).
    enum Value: Sendable, CustomStringConvertible {
        case null
        case bool(Bool)
        /// A number with no fractional part, kept exact.
        case integer(Int)
        case number(Double)
        case string(String)
        case list([Value])
        case object([String: Value])

        /// JSONSerialization gives `NSNumber` for numbers and booleans alike, and on Linux `is Bool`
        /// holds for 0 and 1 too; the boolean subclass is the reliable test.
        init(_ any: Any) {
            switch any {
            case let number as NSNumber where String(describing: type(of: any)).contains("Boolean"): self = .bool(number.boolValue)
            case let number as NSNumber:
                let double = number.doubleValue
                self = double == double.rounded() && abs(double) < 0x1p63 ? .integer(number.intValue) : .number(double)
            case let text as String: self = .string(text)
            case let list as [Any]: self = .list(list.map(Value.init))
            case let object as [String: Any]: self = .object(object.mapValues(Value.init))
            default: self = .null
            }
        }

        var description: String {
            switch self {
            case .null: "null"
            case .bool(let flag): "\(flag)"
            case .integer(let value): "\(value)"
            case .number(let value): "\(value)"
            case .string(let text): text
            case .list(let list): "(" + list.map(\.description).joined(separator: ", ") + ")"
            case .object: "an object"
            }
        }
    }

    public let file: String
    let values: [String: Value]

    init(file: String, values: [String: Value]) {
        self.file = file
        self.values = values
    }

    /// Reads a JSON object file.
    public init(contentsOf path: String) throws {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CheckpointError.missingFile(path: path)
        }
        try self.init(file: (path as NSString).lastPathComponent, data: data)
    }

    /// The JSON object in `data`, read from the file named `name`.
    public init(file name: String, data: Data) throws {
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: data)
        } catch {
            throw CheckpointError.badConfiguration(file: name, field: "(document)", reason: "not valid JSON: \(error.localizedDescription)")
        }
        guard case .object(let values) = Value(object) else {
            throw CheckpointError.badConfiguration(file: name, field: "(document)", reason: "not a JSON object")
        }
        self.init(file: name, values: values)
    }

    public func has(_ key: String) -> Bool { firstValue([key]) != nil }

    private func firstValue(_ keys: [String]) -> (String, Value)? {
        for key in keys {
            if let value = values[key] {
                if case .null = value { continue }
                return (key, value)
            }
        }
        return nil
    }

    private func fail(_ key: String, _ reason: String) -> CheckpointError {
        .badConfiguration(file: file, field: key, reason: reason)
    }

    public func int(_ keys: String...) throws -> Int {
        guard let value = try optionalInt(keys) else { throw fail(keys[0], "missing") }
        return value
    }

    public func int(_ keys: String..., default fallback: Int) throws -> Int {
        try optionalInt(keys) ?? fallback
    }

    public func optionalInt(_ keys: String...) throws -> Int? { try optionalInt(keys) }

    private func optionalInt(_ keys: [String]) throws -> Int? {
        guard let (key, value) = firstValue(keys) else { return nil }
        guard case .integer(let number) = value else { throw fail(key, "expected an integer, found \(value)") }
        return number
    }

    public func positiveInt(_ keys: String...) throws -> Int {
        guard let value = try optionalInt(keys) else { throw fail(keys[0], "missing") }
        guard value > 0 else { throw fail(keys[0], "must be positive, found \(value)") }
        return value
    }

    public func double(_ keys: String...) throws -> Double {
        guard let value = try optionalDouble(keys) else { throw fail(keys[0], "missing") }
        return value
    }

    public func double(_ keys: String..., default fallback: Double) throws -> Double {
        try optionalDouble(keys) ?? fallback
    }

    public func optionalDouble(_ keys: String...) throws -> Double? { try optionalDouble(keys) }

    private func optionalDouble(_ keys: [String]) throws -> Double? {
        guard let (key, value) = firstValue(keys) else { return nil }
        switch value {
        case .integer(let number): return Double(number)
        case .number(let number): return number
        default: throw fail(key, "expected a number, found \(value)")
        }
    }

    public func bool(_ keys: String..., default fallback: Bool) throws -> Bool {
        guard let (key, value) = firstValue(keys) else { return fallback }
        guard case .bool(let flag) = value else { throw fail(key, "expected true or false, found \(value)") }
        return flag
    }

    public func optionalStringList(_ keys: String...) throws -> [String]? {
        guard let (key, value) = firstValue(keys) else { return nil }
        guard case .list(let items) = value else { throw fail(key, "expected a list of strings, found \(value)") }
        return try items.map { item in
            guard case .string(let text) = item else { throw fail(key, "expected a list of strings, found \(value)") }
            return text
        }
    }

    public func optionalString(_ keys: String...) throws -> String? {
        guard let (key, value) = firstValue(keys) else { return nil }
        guard case .string(let text) = value else { throw fail(key, "expected a string, found \(value)") }
        return text
    }

    public func intList(_ keys: String..., default fallback: [Int]) throws -> [Int] {
        guard let (key, value) = firstValue(keys) else { return fallback }
        guard let list = Self.integers(value) else { throw fail(key, "expected a list of integers, found \(value)") }
        return list
    }

    private static func integers(_ value: Value) -> [Int]? {
        guard case .list(let items) = value else { return nil }
        var result: [Int] = []
        for item in items {
            guard case .integer(let number) = item else { return nil }
            result.append(number)
        }
        return result
    }

    /// An integer or a list of integers (as `eos_token_id` may be either).
    public func intOrIntList(_ keys: String...) throws -> [Int] {
        guard let (key, value) = firstValue(keys) else { return [] }
        if case .integer(let number) = value { return [number] }
        guard let list = Self.integers(value) else { throw fail(key, "expected an integer or a list of integers") }
        return list
    }

    public func object(_ keys: String...) throws -> ConfigurationFields? {
        guard let (key, value) = firstValue(keys) else { return nil }
        guard case .object(let nested) = value else { throw fail(key, "expected an object, found \(value)") }
        return ConfigurationFields(file: file + " " + key, values: nested)
    }
}
