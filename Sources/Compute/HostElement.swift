/// A host value type that a tensor of ``dtype`` holds bit for bit: what ``Backend/upload(_:into:)`` takes.
public protocol HostElement: BitwiseCopyable {
    static var dtype: DType { get }
}

extension Int32: HostElement {
    public static var dtype: DType { .int32 }
}

extension Float: HostElement {
    public static var dtype: DType { .float32 }
}
