/// A dictionary that keeps its keys in insertion order and tells keys apart by code point, as
/// Python's does (Swift's `String` equality would merge "é" and "e\u{301}").
public struct Mapping {
    public private(set) var keys: [String] = []
    private var storage: [ScalarKey: Value] = [:]

    public init() {}

    public init(_ pairs: [(String, Value)]) {
        for (key, value) in pairs { self[key] = value }
    }

    public var count: Int { keys.count }
    public var isEmpty: Bool { keys.isEmpty }

    public subscript(key: String) -> Value? {
        get { storage[ScalarKey(key)] }
        set {
            let scalarKey = ScalarKey(key)
            if let newValue {
                if storage.updateValue(newValue, forKey: scalarKey) == nil { keys.append(key) }
            } else if storage.removeValue(forKey: scalarKey) != nil {
                keys.removeAll { ScalarKey($0) == scalarKey }
            }
        }
    }

    public var pairs: [(String, Value)] { keys.map { ($0, storage[ScalarKey($0)]!) } }
}
