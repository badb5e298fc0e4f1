import Foundation

/// Every kernel of `Kernels/kernels.cu`, looked up once after compilation.
final class CUDAKernels {
    struct WeightVariants {
        let f32: Kernel
        let bf16: Kernel
    }

    let embedding: WeightVariants
    let matmul: WeightVariants
    let rmsNorm: WeightVariants
    let expertUp: WeightVariants
    let expertDown: WeightVariants
    let rotary: Kernel
    let clamp: Kernel
    let storeKV: Kernel
    let attention: Kernel
    let routeTopK: Kernel
    let siluMul: Kernel
    let combine: Kernel
    let add: Kernel
    let addSigmoidGated: Kernel
    let gatherRows: Kernel

    init(driver: CUDADriver, compiler: NVRTCCompiler) throws {
        guard let url = Bundle.module.url(forResource: "kernels", withExtension: "cu", subdirectory: "Kernels"),
              let source = try? String(contentsOf: url, encoding: .utf8) else {
            throw CUDAError.compilation(code: -1, log: "Kernels/kernels.cu is missing from the ComputeCUDA resource bundle")
        }
        let cubin = try compiler.compile(source: source, name: "kernels")
        var module: OpaquePointer?
        try cubin.withUnsafeBytes { try driver.check(driver.cuModuleLoadData(&module, $0.baseAddress!), "cuModuleLoadData") }
        func kernel(_ name: String) throws -> Kernel {
            var function: OpaquePointer?
            try driver.check(driver.cuModuleGetFunction(&function, module, name), "cuModuleGetFunction(\(name))")
            return Kernel(function: function, name: name)
        }
        func variants(_ name: String) throws -> WeightVariants {
            WeightVariants(f32: try kernel(name + "_f32"), bf16: try kernel(name + "_bf16"))
        }
        embedding = try variants("embedding")
        matmul = try variants("matmul")
        rmsNorm = try variants("rms_norm")
        expertUp = try variants("expert_up")
        expertDown = try variants("expert_down")
        rotary = try kernel("rotary")
        clamp = try kernel("clamp_values")
        storeKV = try kernel("store_kv")
        attention = try kernel("attention")
        routeTopK = try kernel("route_top_k")
        siluMul = try kernel("silu_mul")
        combine = try kernel("combine")
        add = try kernel("add")
        addSigmoidGated = try kernel("add_sigmoid_gated")
        gatherRows = try kernel("gather_rows")
    }
}
