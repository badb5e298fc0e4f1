/// Element types of tensors. Weights come in any of the floating types; compute is float32 on
/// the CPU backend; token ids, positions and expert picks are int32.
public enum DType: String, Sendable, CaseIterable, CustomStringConvertible {
    case float32
    case bfloat16
    case float16
    case int32

    public var byteCount: Int {
        switch self {
        case .float32, .int32: 4
        case .bfloat16, .float16: 2
        }
    }

    public var isFloatingPoint: Bool { self != .int32 }

    public var description: String { rawValue }
}
