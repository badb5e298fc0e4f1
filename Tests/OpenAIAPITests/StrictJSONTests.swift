import OpenAIAPI
import Testing

struct StrictJSONTests {
    @Test func parsesWhatRFC8259Allows() throws {
        let value = try StrictJSON.parse(Array(#" {"a": [1, -2.5e3, "x\u00e9\ud83d\ude00\n", true, false, null], "b": {}} "#.utf8))
        #expect(value == .object([("a", .array([.int(1), .number(-2500), .string("xé😀\n"), .bool(true), .bool(false), .null])),
                                  ("b", .object([]))]))
    }

    static let duplicated = [
        #"{"a": 1, "a": 2}"#, #"{"a": {"b": 1, "b": 1}}"#, #"{"a": 1, "\u0061": 2}"#, #"[{"x": 1, "y": 2, "x": 3}]"#,
    ]

    static let malformed = [
        "", "{", #"{"a" 1}"#, "[1,]", "01", "1.", "-", #""\ud800""#, #""a"#, "{\"a\":\"\u{1}\"}", "[1] 2", "nul", "+1",
        String(repeating: "[", count: 200) + String(repeating: "]", count: 200),
    ]

    @Test(arguments: duplicated)
    func aKeyTwiceInOneObjectIsRefused(_ text: String) {
        #expect {
            _ = try StrictJSON.parse(Array(text.utf8))
        } throws: { error in
            if case .duplicateKey = error as? StrictJSON.Failure { return true }
            return false
        }
    }

    @Test(arguments: malformed)
    func malformedJSONIsRefused(_ text: String) {
        #expect(throws: StrictJSON.Failure.self) { _ = try StrictJSON.parse(Array(text.utf8)) }
    }

    @Test func theKeysOfSeparateObjectsMayRepeat() throws {
        _ = try StrictJSON.parse(Array(#"{"a": {"x": 1}, "b": {"x": 2}, "c": [{"x": 3}, {"x": 4}]}"#.utf8))
    }
}
