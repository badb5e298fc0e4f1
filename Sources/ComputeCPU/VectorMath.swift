#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Dispatch

/// The float32 primitives every CPU kernel is built from.
///
/// Batch invariance rests on these: a dot product's summation order depends only on `count`
/// (four 8-lane accumulators, then a fixed tree), never on which thread runs it or what else is
/// in the batch, so a token's result is the same however the batch is formed or split.
enum VectorMath {
    @inline(__always)
    static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int) -> Float {
        var s0 = SIMD8<Float>(), s1 = SIMD8<Float>(), s2 = SIMD8<Float>(), s3 = SIMD8<Float>()
        let ra = UnsafeRawPointer(a), rb = UnsafeRawPointer(b)
        var index = 0
        while index + 32 <= count {
            let offset = index * 4
            s0 += ra.loadUnaligned(fromByteOffset: offset, as: SIMD8<Float>.self) * rb.loadUnaligned(fromByteOffset: offset, as: SIMD8<Float>.self)
            s1 += ra.loadUnaligned(fromByteOffset: offset + 32, as: SIMD8<Float>.self) * rb.loadUnaligned(fromByteOffset: offset + 32, as: SIMD8<Float>.self)
            s2 += ra.loadUnaligned(fromByteOffset: offset + 64, as: SIMD8<Float>.self) * rb.loadUnaligned(fromByteOffset: offset + 64, as: SIMD8<Float>.self)
            s3 += ra.loadUnaligned(fromByteOffset: offset + 96, as: SIMD8<Float>.self) * rb.loadUnaligned(fromByteOffset: offset + 96, as: SIMD8<Float>.self)
            index += 32
        }
        while index + 8 <= count {
            s0 += ra.loadUnaligned(fromByteOffset: index * 4, as: SIMD8<Float>.self) * rb.loadUnaligned(fromByteOffset: index * 4, as: SIMD8<Float>.self)
            index += 8
        }
        var sum = ((s0 + s1) + (s2 + s3)).sum()
        while index < count {
            sum += a[index] * b[index]
            index += 1
        }
        return sum
    }

    @inline(__always)
    static func sumOfSquares(_ a: UnsafePointer<Float>, count: Int) -> Float {
        dot(a, a, count: count)
    }

    /// `y += alpha · x`
    @inline(__always)
    static func addScaled(_ x: UnsafePointer<Float>, alpha: Float, into y: UnsafeMutablePointer<Float>, count: Int) {
        var index = 0
        let rx = UnsafeRawPointer(x), ry = UnsafeMutableRawPointer(y)
        let scale = SIMD8<Float>(repeating: alpha)
        while index + 8 <= count {
            let offset = index * 4
            let sum = ry.loadUnaligned(fromByteOffset: offset, as: SIMD8<Float>.self) + scale * rx.loadUnaligned(fromByteOffset: offset, as: SIMD8<Float>.self)
            ry.storeBytes(of: sum, toByteOffset: offset, as: SIMD8<Float>.self)
            index += 8
        }
        while index < count {
            y[index] += alpha * x[index]
            index += 1
        }
    }

    @inline(__always)
    static func sigmoid(_ x: Float) -> Float { 1 / (1 + expf(-x)) }
}

/// Runs `body(index)` for `0..<count` on Dispatch's worker threads and waits for all of them.
///
/// The body writes disjoint parts of tensors (each kernel splits by output rows), which is what
/// makes handing it to several threads sound although it captures raw pointers.
@inline(__always)
func parallelFor(_ count: Int, _ body: (Int) -> Void) {
    if count <= 1 {
        if count == 1 { body(0) }
        return
    }
    withoutActuallyEscaping(body) { body in
        let shared = UncheckedSendableBody(body: body)
        DispatchQueue.concurrentPerform(iterations: count) { shared.body($0) }
    }
}

// Unchecked Sendable: the body runs on the pool's threads while its caller waits; each call writes its own part of the caller's buffers.
private struct UncheckedSendableBody: @unchecked Sendable {
    let body: (Int) -> Void
}
