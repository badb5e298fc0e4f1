/// A function a template can call: a built-in, a bound method or a macro.
public struct Callable {
    public let name: String
    let body: (Arguments) throws -> Value

    init(_ name: String, _ body: @escaping (Arguments) throws -> Value) {
        self.name = name
        self.body = body
    }
}

/// A call's arguments: positional ones, then keyword ones in the order written.

struct Arguments {
    var positional: [Value]
    var keywords: [(String, Value)]

    init(_ positional: [Value] = [], keywords: [(String, Value)] = []) {
        self.positional = positional
        self.keywords = keywords
    }

    /// The argument at `index` or named `name`, or nil.
    func value(_ index: Int, _ name: String) -> Value? {
        if index < positional.count { return positional[index] }
        return keywords.first { $0.0 == name }?.1
    }
}
