import Foundation

/// The model `flexpert serve` runs without `--model`: a tiny Qwen3-MoE checkpoint with its
/// tokenizer, shipped as a resource so that serving needs no download.
enum DefaultModel {
    static let name = "flexpert-tiny-moe"

    static func folder() throws -> String {
        guard let url = Bundle.module.url(forResource: "DefaultModel", withExtension: nil) else {
            throw DefaultModelError()
        }
        return url.path
    }

    struct DefaultModelError: Error, CustomStringConvertible {
        var description: String {
            "the built-in model is missing: Flexpert_flexpert.resources must sit beside the flexpert executable; use --model DIR"
        }
    }
}
