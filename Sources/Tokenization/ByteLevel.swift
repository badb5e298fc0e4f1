/// GPT-2's reversible map between bytes and printable Unicode scalars, which lets a BPE
/// vocabulary of strings cover arbitrary bytes.
enum ByteLevel {
    /// `scalarForByte[b]` is the scalar that stands for byte `b`.
    static let scalarForByte: [UInt32] = {
        var table = [UInt32](repeating: 0, count: 256)
        var extra: UInt32 = 0
        for byte in 0..<256 {
            let isPrintable = (0x21...0x7E).contains(byte) || (0xA1...0xAC).contains(byte) || (0xAE...0xFF).contains(byte)
            if isPrintable {
                table[byte] = UInt32(byte)
            } else {
                table[byte] = 256 + extra
                extra += 1
            }
        }
        return table
    }()

    /// The inverse of ``scalarForByte``, indexed by scalar value (all are below 324).
    static let byteForScalar: [Int16] = {
        var table = [Int16](repeating: -1, count: 324)
        for (byte, scalar) in scalarForByte.enumerated() { table[Int(scalar)] = Int16(byte) }
        return table
    }()

    /// GPT-2's own split, used by the ByteLevel pre-tokenizer when `use_regex` is true.
    static let gpt2Pattern = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#

    /// The bytes a token string stands for, or `nil` if some scalar is outside the map (then the
    /// decoder uses the token's own UTF-8 bytes, as `tokenizers` does).
    static func bytes(of token: String) -> [UInt8]? {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(token.unicodeScalars.count)
        for scalar in token.unicodeScalars {
            guard scalar.value < 324, byteForScalar[Int(scalar.value)] >= 0 else { return nil }
            bytes.append(UInt8(byteForScalar[Int(scalar.value)]))
        }
        return bytes
    }
}
