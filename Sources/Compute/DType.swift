/// Element types of tensors. Weights come in any of the floating types; compute is float32 on
/// the CPU backend; token ids, positions and expert picks are int32. `float8E4M3` and `uint8`
/// (packed FP4 values, power-of-two scales) are storage types of quantized checkpoints only, which
/// the checkpoint layer dequantizes as it reads them: no backend holds them.
public enum DType: String, Sendable, CaseIterable, CustomStringConvertible {
    case float32
    case bfloat16
    case float16
    case int32
    case float8E4M3 = "float8_e4m3fn"
    case uint8

    public var byteCount: Int {
        switch self {
        case .float32, .int32: 4
        case .bfloat16, .float16: 2
        case .float8E4M3, .uint8: 1
        }
    }

    public var isFloatingPoint: Bool { self != .int32 && self != .uint8 }

    public var description: String { rawValue }
}
