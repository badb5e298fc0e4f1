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
