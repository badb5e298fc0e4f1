import ArgumentParser
import Foundation

@main
struct Flexpert: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flexpert",
        abstract: "A serving engine for Mixture-of-Experts language models with elastic expert parallelism.",
        subcommands: [ServeCommand.self, EngineCommand.self, ScaleCommand.self, EPLBCommand.self, GenerateCommand.self, CheckCUDACommand.self, TokenizeCommand.self, DetokenizeCommand.self, BenchCommand.self])
}

/// Parses "1,2,3" (spaces allowed) into ids.
func parseIDList(_ text: String, option: String) throws -> [Int] {
    let parts = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    guard !parts.isEmpty else { throw ValidationError("\(option) needs at least one token id") }
    return try parts.map { part in
        guard let id = Int(part), id >= 0 else { throw ValidationError("\(option): '\(part)' is not a token id") }
        return id
    }
}

/// Compact JSON text of a value made of dictionaries, arrays, strings, numbers and nulls.
func jsonText(_ value: Any) throws -> String {
    let data = try JSONSerialization.data(withJSONObject: value, options: [.withoutEscapingSlashes, .sortedKeys])
    return String(decoding: data, as: UTF8.self)
}
