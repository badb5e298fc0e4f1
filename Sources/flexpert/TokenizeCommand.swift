import ArgumentParser
import Foundation
import Tokenization

struct TokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "tokenize", abstract: "Print the token ids of a text.")

    @Option(help: "A folder with tokenizer.json.")
    var model: String

    @Option(help: "The text to tokenize.")
    var text: String

    @Flag(help: "Print {\"ids\":[…]}.")
    var json = false

    func run() throws {
        let ids = try Tokenizer(folder: model).encode(text)
        print(json ? try jsonText(["ids": ids]) : ids.map(String.init).joined(separator: ","))
    }
}

struct DetokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "detokenize", abstract: "Print the text of token ids.")

    @Option(help: "A folder with tokenizer.json.")
    var model: String

    @Option(help: "Comma-separated token ids.")
    var ids: String

    func run() throws {
        print(try Tokenizer(folder: model).decode(try parseIDList(ids, option: "--ids")))
    }
}
