import ArgumentParser
import FrontEnd
import Foundation
import OpenAIAPI
import Tokenization

struct TokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Print the token ids of a text, or of chat messages rendered through the chat template.")

    @Option(help: "A folder with tokenizer.json (and tokenizer_config.json or chat_template.jinja for --messages).")
    var model: String

    @Option(help: "The text to tokenize.")
    var text: String?

    @Option(help: "A JSON file of chat messages, rendered as apply_chat_template renders them.")
    var messages: String?

    @Option(help: "A JSON file of OpenAI tools, given to the chat template.")
    var tools: String?

    @Flag(name: .customLong("add-generation-prompt"), help: "End the rendered chat with the assistant's header.")
    var addsGenerationPrompt = false

    @Flag(name: .customLong("continue-final-message"), help: "End the rendered chat inside its final (assistant) message.")
    var continuesFinalMessage = false

    @Option(name: .customLong("chat-template"), help: "A Jinja chat template file instead of the folder's.")
    var chatTemplate: String?

    @Option(name: .customLong("template-kwargs"), help: "A JSON object of extra template variables, e.g. '{\"enable_thinking\": false}'.")
    var templateKwargs: String?

    @Flag(name: .customLong("add-special-tokens"), help: "Add the post-processor's special tokens (a BOS) to --text.")
    var addsSpecialTokens = false

    @Flag(help: "Print JSON: {\"ids\": […]}, with \"prompt\" for --messages.")
    var json = false

    func validate() throws {
        guard (text == nil) != (messages == nil) else { throw ValidationError("give --text or --messages") }
        if messages == nil && (tools != nil || addsGenerationPrompt || continuesFinalMessage || chatTemplate != nil || templateKwargs != nil) {
            throw ValidationError("--tools, --add-generation-prompt, --continue-final-message, --chat-template and --template-kwargs need --messages")
        }
    }

    func run() throws {
        let tokenizer = try Tokenizer(folder: model)
        guard let messages else {
            let ids = tokenizer.encode(text!, addsSpecialTokens: addsSpecialTokens)
            print(json ? try jsonText(["ids": ids]) : ids.map(String.init).joined(separator: ","))
            return
        }
        var body: [(String, JSONValue)] = [
            ("messages", try Self.readJSON(messages, option: "--messages")),
            ("add_generation_prompt", .bool(addsGenerationPrompt)),
            ("continue_final_message", .bool(continuesFinalMessage)),
        ]
        if let tools { body.append(("tools", try Self.readJSON(tools, option: "--tools"))) }
        if let templateKwargs { body.append(("chat_template_kwargs", try Self.parseJSON(templateKwargs, option: "--template-kwargs"))) }
        let override = try chatTemplate.map(ChatTemplate.init(argument:))
        let templating = ChatTemplating(configuration: try TokenizerConfiguration(folder: model), override: override)
        let prompt: String
        do {
            prompt = try templating.prompt(try ChatTemplateFields(.object(body), addsGenerationPromptByDefault: false))
        } catch let error as APIError {
            throw ValidationError(error.message)
        }
        let ids = tokenizer.encode(prompt, addsSpecialTokens: false)
        if json {
            print(JSONValue.object([("prompt", .string(prompt)), ("ids", .array(ids.map { .int($0) }))]).serialized())
        } else {
            print(prompt)
            print(ids.map(String.init).joined(separator: ","))
        }
    }

    private static func readJSON(_ path: String, option: String) throws -> JSONValue {
        guard let data = FileManager.default.contents(atPath: path) else { throw ValidationError("\(option): cannot read \(path)") }
        return try parseJSON(String(decoding: data, as: UTF8.self), option: option)
    }

    private static func parseJSON(_ text: String, option: String) throws -> JSONValue {
        do {
            return try StrictJSON.parse(Array(text.utf8))
        } catch {
            throw ValidationError("\(option) is not JSON: \(error)")
        }
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
