/// A parsed Jinja template, rendered as transformers renders chat templates: Jinja's
/// `ImmutableSandboxedEnvironment` with `trim_blocks`, `lstrip_blocks` and loop controls, the
/// `tojson` filter as transformers defines it, and the `raise_exception` and `strftime_now` globals.
public struct Template: Sendable {
    private let statements: [Statement]

    /// Parses `source`; a construct this interpreter does not implement is refused here when the
    /// parser can tell (a tag), or when rendering reaches it (a filter, a test, a method).
    public init(_ source: String) throws {
        statements = try Parser.parse(source)
    }

    /// Renders with `variables` as the template's globals. `now` is the time `strftime_now`
    /// formats (seconds since 1970, in the machine's time zone, as Python's `datetime.now()`).
    public func render(_ variables: [(String, Value)], now: Double? = nil) throws -> String {
        let renderer = Renderer(variables: Mapping(variables), now: now)
        return try renderer.render(statements)
    }
}
