/// `tokenizer.json`'s `decoder`: token strings back to text, each step over the list of tokens as
/// `tokenizers`' `decode_chain` does. Tokens are kept as UTF-8 bytes so that a stream can carry a
/// character split across `<0xNN>` pieces.
indirect enum Decoder: Sendable {
    /// GPT-2's byte-level scalars back to bytes.
    case byteLevel
    case replace(Replacement)
    /// `<0xNN>` tokens to their bytes; a run that is not valid UTF-8 becomes one U+FFFD per byte.
    case byteFallback
    /// All tokens into one.
    case fuse
    /// Removes up to `leading` copies of `content` from each token's start and `trailing` from its end.
    case strip(content: Unicode.Scalar, leading: Int, trailing: Int)
    /// The replacement character back to spaces; in the first token, dropped when a prefix was prepended.
    case metaspace(replacement: Unicode.Scalar, dropsInFirst: Bool)
    case sequence([Decoder])

    init?(_ spec: Any?, file: String) throws {
        guard let spec = spec as? [String: Any] else { return nil }
        switch spec["type"] as? String {
        case "ByteLevel": self = .byteLevel
        case "Replace": self = .replace(try Replacement(spec, file: file))
        case "ByteFallback": self = .byteFallback
        case "Fuse": self = .fuse
        case "Strip":
            guard let content = (spec["content"] as? String)?.unicodeScalars.first else {
                throw TokenizationError.badFile(file: file, reason: "Strip decoder without content")
            }
            self = .strip(content: content, leading: spec["start"] as? Int ?? 0, trailing: spec["stop"] as? Int ?? 0)
        case "Metaspace":
            let replacement = (spec["replacement"] as? String)?.unicodeScalars.first ?? "\u{2581}"
            let scheme = spec["prepend_scheme"] as? String
            let prepends = scheme.map { $0 != "never" } ?? (spec["add_prefix_space"] as? Bool ?? true)
            self = .metaspace(replacement: replacement, dropsInFirst: prepends)
        case "Sequence":
            self = .sequence(try (spec["decoders"] as? [Any] ?? []).compactMap { try Decoder($0, file: file) })
        default:
            throw TokenizationError.unsupported(file: file, component: "decoder", detail: "\(spec["type"] ?? "?")")
        }
    }

    /// The text of `tokens`. `continuesText`: the tokens follow earlier ones of the same text, so
    /// that steps about the text's start (Metaspace's first token, a `Strip` after `Fuse`) are
    /// skipped. `keepsRawBytes`: byte-fallback runs stay bytes for a stream to complete later.
    func decode(_ tokens: [[UInt8]], continuesText: Bool, keepsRawBytes: Bool) -> [UInt8] {
        var state = tokens
        var fused = false
        apply(to: &state, fused: &fused, continuesText: continuesText, keepsRawBytes: keepsRawBytes)
        return Array(state.joined())
    }

    private func apply(to tokens: inout [[UInt8]], fused: inout Bool, continuesText: Bool, keepsRawBytes: Bool) {
        switch self {
        case .byteLevel:
            tokens = tokens.map { token in
                let text = String(decoding: token, as: UTF8.self)
                return ByteLevel.bytes(of: text) ?? token
            }
        case .replace(let replacement):
            tokens = tokens.map { Array(replacement.apply(String(decoding: $0, as: UTF8.self)).utf8) }
        case .byteFallback:
            var result: [[UInt8]] = []
            var run: [UInt8] = []
            func flush() {
                guard !run.isEmpty else { return }
                if keepsRawBytes || String(validating: run, as: UTF8.self) != nil {
                    result.append(run)
                } else {
                    result.append(Array(String(repeating: "\u{FFFD}", count: run.count).utf8))
                }
                run = []
            }
            for token in tokens {
                if let byte = BPEModel.fallbackByte(String(decoding: token, as: UTF8.self)) {
                    run.append(byte)
                } else {
                    flush()
                    result.append(token)
                }
            }
            flush()
            tokens = result
        case .fuse:
            tokens = [Array(tokens.joined())]
            fused = true
        case .strip(let content, let leading, let trailing):
            let contentBytes = Array(String(content).utf8)
            tokens = tokens.map { token in
                var slice = token[...]
                if !(fused && continuesText) {
                    var removed = 0
                    while removed < leading, slice.starts(with: contentBytes) {
                        slice = slice.dropFirst(contentBytes.count)
                        removed += 1
                    }
                }
                var removed = 0
                while removed < trailing, slice.count >= contentBytes.count, slice.suffix(contentBytes.count).elementsEqual(contentBytes) {
                    slice = slice.dropLast(contentBytes.count)
                    removed += 1
                }
                return Array(slice)
            }
        case .metaspace(let replacement, let dropsInFirst):
            tokens = tokens.enumerated().map { index, token in
                var text = String.UnicodeScalarView()
                for scalar in String(decoding: token, as: UTF8.self).unicodeScalars {
                    if scalar == replacement {
                        if index == 0 && dropsInFirst && !continuesText { continue }
                        text.append(" ")
                    } else {
                        text.append(scalar)
                    }
                }
                return Array(String(text).utf8)
            }
        case .sequence(let parts):
            for part in parts { part.apply(to: &tokens, fused: &fused, continuesText: continuesText, keepsRawBytes: keepsRawBytes) }
        }
    }
}
