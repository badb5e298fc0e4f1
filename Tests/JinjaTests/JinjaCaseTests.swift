import Foundation
import Testing
@testable import Jinja

private let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures/chat").path

/// Each construct against Jinja2 itself, set up as transformers sets it up (`Scripts/make-jinja-cases.py`).
@Suite struct JinjaCaseTests {
    private static func cases() throws -> (context: [(String, Value)], cases: [Value]) {
        let text = try String(contentsOfFile: fixtures + "/jinja-cases.json", encoding: .utf8)
        guard case .object(let root)? = JSON.parse(text), case .object(let context)? = root["context"],
              case .array(let cases)? = root["cases"] else {
            throw CocoaError(.fileReadCorruptFile)
        }
        return (context.pairs, cases)
    }

    @Test func everyConstructRendersAsJinja2Does() throws {
        let (context, cases) = try Self.cases()
        #expect(cases.count > 60)
        for case .object(let vector) in cases {
            guard case .string(let source)? = vector["template"] else { continue }
            let result: Result<String, any Error> = Result { try Template(source).render(context) }
            if case .string(let expected)? = vector["rendered"] {
                switch result {
                case .success(let rendered): #expect(Array(rendered.unicodeScalars) == Array(expected.unicodeScalars), "\(source.debugDescription)")
                case .failure(let error): Issue.record("\(source.debugDescription) failed: \(error)")
                }
            } else {
                guard case .failure(let error) = result else {
                    Issue.record("\(source.debugDescription) rendered, but Jinja2 refused it: \(vector["error"]?.text ?? "")")
                    continue
                }
                if case .raised(let message) = error as? TemplateError {
                    #expect("TemplateError: " + message == vector["error"]?.text)
                }
            }
        }
    }
}

/// What the interpreter cannot run is an error naming the construct and its line, never a wrong prompt.
@Suite struct JinjaRefusalTests {
    @Test func unsupportedConstructsNameThemselvesAndTheirLine() throws {
        let cases: [(String, String)] = [
            ("line\n{% include 'other.jinja' %}", "template line 2: the 'include' tag is not supported"),
            ("{{ 'a' }}\n\n{{ x | wordwrap(3) }}", "template line 3: the filter 'wordwrap' is not supported"),
            ("{% if x is prime %}{% endif %}", "template line 1: the test 'prime' is not supported"),
            ("{% for m in messages recursive %}{% endfor %}", "template line 1: a recursive for loop is not supported"),
        ]
        for (source, message) in cases {
            do {
                _ = try Template(source).render([("messages", .array([.int(1)]))])
                Issue.record("\(source.debugDescription) rendered")
            } catch let error as TemplateError {
                #expect(error.description == message)
            }
        }
    }

    @Test func runawayTemplatesFailInsteadOfExhaustingTheServer() {
        #expect(throws: TemplateError.self) { try Template("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}").render([]) }
        #expect(throws: TemplateError.self) { try Template("{{ 'x' * 1000000000 }}").render([]) }
        #expect(throws: TemplateError.self) { try Template("{{ range(1000000000) | length }}").render([]) }
    }

    @Test func syntaxErrorsAndFailuresSayWhere() throws {
        #expect(throws: TemplateError.syntax("unexpected '%}'", line: 2)) { try Template("ok\n{% if %}") }
        #expect(throws: TemplateError.syntax("missing 'else' or 'endfor'", line: 1)) { try Template("{% for x in y %}") }
        #expect(throws: TemplateError.runtime("'missing' is undefined", line: 3)) {
            try Template("a\nb\n{{ missing.field }}").render([])
        }
    }
}
