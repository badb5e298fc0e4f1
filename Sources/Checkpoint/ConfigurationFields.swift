import Foundation

/// Typed reads of a JSON object from a Hugging Face file, with errors that name the file and field.
///
/// Several fields have two spellings: the one published with the models (transformers 4) and the
/// one transformers 5 writes. Readers take every spelling, first match wins.
/// Unchecked Sendable: JSONSerialization's `Any` values, never written after init.
public struct ConfigurationFields: @unchecked Sendable {
    public let file: String
    let values: [String: Any]

    public init(file: String, values: [String: Any]) {
        self.file = file
        self.values = values
    }

    /// Reads a JSON object file.
    public init(contentsOf path: String) throws {
        let name = (path as NSString).lastPathComponent
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CheckpointError.missingFile(path: path)
        }
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: data)
        } catch {
            throw CheckpointError.badConfiguration(file: name, field: "(document)", reason: "not valid JSON: \(error.localizedDescription)")
        }
        guard let values = object as? [String: Any] else {
            throw CheckpointError.badConfiguration(file: name, field: "(document)", reason: "not a JSON object")
        }
        self.init(file: name, values: values)
    }

    /// JSONSerialization gives `NSNumber` for numbers and booleans alike, and on Linux `is Bool`
    /// holds for 0 and 1 too; the boolean subclass is the reliable test.
    private static func isBoolean(_ value: Any) -> Bool {
        String(describing: type(of: value)).contains("Boolean")
    }

    public func has(_ key: String) -> Bool { values[key] != nil && !(values[key] is NSNull) }

    private func firstValue(_ keys: [String]) -> (String, Any)? {
        for key in keys { if let value = values[key], !(value is NSNull) { return (key, value) } }
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
        guard let number = value as? NSNumber, !Self.isBoolean(value), number.doubleValue == number.doubleValue.rounded() else {
            throw fail(key, "expected an integer, found \(value)")
        }
        return number.intValue
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
        guard let number = value as? NSNumber, !Self.isBoolean(value) else { throw fail(key, "expected a number, found \(value)") }
        return number.doubleValue
    }

    public func bool(_ keys: String..., default fallback: Bool) throws -> Bool {
        guard let (key, value) = firstValue(keys) else { return fallback }
        guard Self.isBoolean(value), let flag = value as? Bool else { throw fail(key, "expected true or false, found \(value)") }
        return flag
    }

    public func optionalString(_ keys: String...) throws -> String? {
        guard let (key, value) = firstValue(keys) else { return nil }
        guard let text = value as? String else { throw fail(key, "expected a string, found \(value)") }
        return text
    }

    public func intList(_ keys: String..., default fallback: [Int]) throws -> [Int] {
        guard let (key, value) = firstValue(keys) else { return fallback }
        guard let list = value as? [NSNumber] else { throw fail(key, "expected a list of integers, found \(value)") }
        return list.map(\.intValue)
    }

    /// An integer or a list of integers (as `eos_token_id` may be either).
    public func intOrIntList(_ keys: String...) throws -> [Int] {
        guard let (key, value) = firstValue(keys) else { return [] }
        if let number = value as? NSNumber, !Self.isBoolean(value) { return [number.intValue] }
        guard let list = value as? [NSNumber] else { throw fail(key, "expected an integer or a list of integers") }
        return list.map(\.intValue)
    }

    public func object(_ keys: String...) throws -> ConfigurationFields? {
        guard let (key, value) = firstValue(keys) else { return nil }
        guard let nested = value as? [String: Any] else { throw fail(key, "expected an object, found \(value)") }
        return ConfigurationFields(file: file + " " + key, values: nested)
    }
}
