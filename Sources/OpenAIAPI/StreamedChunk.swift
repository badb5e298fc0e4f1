/// What a client of a streamed completion reads from one event's JSON: how many choices it
/// carries (a token arrived), the usage (the last chunk, with `stream_options.include_usage`),
/// or the error that ended the stream. Other fields are not read.
public struct StreamedChunk: Decodable {
    public struct Usage: Decodable {
        public let completionTokens: Int?

        enum CodingKeys: String, CodingKey { case completionTokens = "completion_tokens" }
    }

    public struct Failure: Decodable {
        public let message: String?
    }

    public let choiceCount: Int
    public let usage: Usage?
    /// An error event (an object with a message; anything else there counts as an error without one).
    public let error: Failure?

    private struct Choice: Decodable {}

    enum CodingKeys: String, CodingKey { case choices, usage, error }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        choiceCount = try container.decodeIfPresent([Choice].self, forKey: .choices)?.count ?? 0
        usage = try? container.decodeIfPresent(Usage.self, forKey: .usage)
        if let failure = try? container.decodeIfPresent(Failure.self, forKey: .error) {
            error = failure
        } else {
            error = (try? container.decodeNil(forKey: .error)) == false ? Failure(message: nil) : nil
        }
    }
}
