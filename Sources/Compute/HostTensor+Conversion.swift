extension HostTensor {
    /// Writes the elements as `dtype` into `target` (which holds `elementCount · dtype.byteCount`
    /// bytes): a copy when the types agree, else float16/bfloat16 → float32, or float32/float16 → bfloat16
    /// rounded to nearest even. Returns false for pairs it cannot convert.
    public func convert(to dtype: DType, into target: UnsafeMutableRawPointer) -> Bool {
        let count = shape.elementCount
        let source = bytes.baseAddress!
        switch (self.dtype, dtype) {
        case (let from, let to) where from == to:
            target.copyMemory(from: source, byteCount: count * dtype.byteCount)
        case (.bfloat16, .float32):
            for index in 0..<count {
                let bits = UInt32(source.loadUnaligned(fromByteOffset: index * 2, as: UInt16.self)) << 16
                target.storeBytes(of: Float(bitPattern: bits), toByteOffset: index * 4, as: Float.self)
            }
        case (.float16, .float32):
            for index in 0..<count {
                let half = Float16(bitPattern: source.loadUnaligned(fromByteOffset: index * 2, as: UInt16.self))
                target.storeBytes(of: Float(half), toByteOffset: index * 4, as: Float.self)
            }
        case (.float32, .bfloat16):
            for index in 0..<count {
                let value = source.loadUnaligned(fromByteOffset: index * 4, as: Float.self)
                target.storeBytes(of: Self.bfloat16Bits(value), toByteOffset: index * 2, as: UInt16.self)
            }
        case (.float16, .bfloat16):
            for index in 0..<count {
                let half = Float16(bitPattern: source.loadUnaligned(fromByteOffset: index * 2, as: UInt16.self))
                target.storeBytes(of: Self.bfloat16Bits(Float(half)), toByteOffset: index * 2, as: UInt16.self)
            }
        default:
            return false
        }
        return true
    }

    /// float32 → bfloat16 rounded to nearest even.
    @inline(__always)
    public static func bfloat16Bits(_ value: Float) -> UInt16 {
        let bits = value.bitPattern
        return UInt16(truncatingIfNeeded: (bits &+ 0x7FFF &+ ((bits >> 16) & 1)) >> 16)
    }
}
