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

/// What the interpreter cannot run is an error naming the construct and its line, not a silently different prompt.
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

    @Test func runawayTemplatesFailInsteadOfExhaustingTheServer() throws {
        #expect(throws: TemplateError.self) { try Template("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}").render([]) }
        #expect(throws: TemplateError.self) { try Template("{{ 'x' * 1000000000 }}").render([]) }
        #expect(throws: TemplateError.self) { try Template("{{ range(1000000000) | length }}").render([]) }
        #expect(throws: TemplateError.self) {
            try Template("{% for a in range(99999) %}{% for b in range(99999) %}{% endfor %}{% endfor %}").render([])
        }
        #expect(throws: TemplateError.self) {
            try Template("{% set s = 'x' * 16000000 %}{% for i in range(9) %}{{ s }}{% endfor %}").render([])
        }
        #expect(throws: TemplateError.self) { try Template("{{ " + String(repeating: "(", count: 5000) + "1" + String(repeating: ")", count: 5000) + " }}") }
        #expect(throws: TemplateError.self) {
            try Template(String(repeating: "{% if true %}", count: 5000) + String(repeating: "{% endif %}", count: 5000))
        }
        #expect(throws: TemplateError.self) {
            try Template("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns | tojson }}").render([])
        }
        #expect(try Template("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns }}").render([]).contains("{'me': ...}>"))
    }

    /// Python's integers have no bound and ours have 64 bits: past them a render fails with a
    /// message instead of trapping the process or printing a wrapped number.
    @Test func integerOverflowFailsTheRender() throws {
        for source in ["{{ 9223372036854775807 + 1 }}", "{{ -9223372036854775807 - 2 }}", "{{ 2 ** 64 }}", "{{ 3 ** 9999999999 }}",
                       "{{ (-9223372036854775807 - 1) // -1 }}", "{{ -(-9223372036854775807 - 1) }}", "{{ 1e300 | int }}",
                       "{{ '1e300' | int }}", "{{ '%d' % 1e300 }}", "{{ 4611686018427387904 * 2 }}",
                       "{{ range(-9223372036854775807, 9223372036854775807) | length }}"] {
            #expect(throws: TemplateError.self, "\(source)") { try Template(source).render([]) }
        }
        #expect(try Template("{{ (-9223372036854775807 - 1) % -1 }} {{ 2 ** 62 }} {{ '%.2f' % 1e300 }}").render([])
            == "0 4611686018427387904 1000000000000000052504760255204420248704468581108159154915854115511802457988908195786371375080447864043704443832883878176942523235360430575644792184786706982848387200926575803737830233794788090059368953234970799945081119038967640880074652742780142494579258788820056842838115669472196386865459400540160.00")
        #expect(try Template("{{ '%.999f' % 0.5 }}").render([]) == "0.5" + String(repeating: "0", count: 998))
    }

    @Test func syntaxErrorsAndFailuresSayWhere() throws {
        #expect(throws: TemplateError.syntax("unexpected '%}'", line: 2)) { try Template("ok\n{% if %}") }
        #expect(throws: TemplateError.syntax("missing 'else' or 'endfor'", line: 1)) { try Template("{% for x in y %}") }
        #expect(throws: TemplateError.runtime("'missing' is undefined", line: 3)) {
            try Template("a\nb\n{{ missing.field }}").render([])
        }
    }
}
