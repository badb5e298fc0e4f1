import Foundation

/// Every kernel of `Kernels/kernels.cu`, looked up once after compilation.
final class CUDAKernels {
    let fillUniform: Kernel
    let fillValue: Kernel
    let embedding: Kernel
    let addBias: Kernel
    let rmsNorm: Kernel
    let addRMSNorm: Kernel
    let rotary: Kernel
    let clamp: Kernel
    let siluMul: Kernel
    let add: Kernel
    let addSigmoidGated: Kernel
    let gatherRows: Kernel
    let gatherAssignments: Kernel
    let storeKV: Kernel
    let prepareAttention: Kernel
    let attention: Kernel
    let attentionMerge: Kernel
    let attentionPrefill: Kernel
    let attentionDecode: Kernel
    let prepareLatentAttention: Kernel
    let latentAttention: Kernel
    let routeTopK: Kernel
    let sortAssignments: Kernel
    let expertGateUp: Kernel
    let expertDown: Kernel
    let expertGEMVGateUp: Kernel
    let expertGEMVDownCombine: Kernel
    let combine: Kernel
    /// linear_rows_T for T = 1, 2, 4 rows, in that order.
    let linearRows: [Kernel]
    let sampleTokens: Kernel
    /// The peer exchange's (PeerMemoryExchange).
    let epDispatch: Kernel
    let epSignal: Kernel
    let epWait: Kernel
    let epSortReceived: Kernel
    let epExpertGateUp: Kernel
    let epExpertDown: Kernel
    let epGEMVGateUp: Kernel
    let epGEMVDown: Kernel

    var all: [Kernel] {
        [fillUniform, fillValue, embedding, addBias, rmsNorm, addRMSNorm, rotary, clamp, siluMul, add, addSigmoidGated, gatherRows, gatherAssignments,
         storeKV, prepareAttention, attention, attentionMerge, attentionPrefill, attentionDecode, prepareLatentAttention, latentAttention, routeTopK, sortAssignments, expertGateUp, expertDown, expertGEMVGateUp,
         expertGEMVDownCombine, combine, sampleTokens, epDispatch, epSignal, epWait, epSortReceived, epExpertGateUp, epExpertDown,
         epGEMVGateUp, epGEMVDown] + linearRows
    }

    init(driver: CUDADriver, compiler: NVRTCCompiler, stream: OpaquePointer?) throws {
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
            return Kernel(function: function, name: name, driver: driver, stream: stream)
        }
        fillUniform = try kernel("fill_uniform")
        fillValue = try kernel("fill_value")
        embedding = try kernel("embedding")
        addBias = try kernel("add_bias")
        rmsNorm = try kernel("rms_norm")
        addRMSNorm = try kernel("add_rms_norm")
        rotary = try kernel("rotary")
        clamp = try kernel("clamp_values")
        siluMul = try kernel("silu_mul")
        add = try kernel("add")
        addSigmoidGated = try kernel("add_sigmoid_gated")
        gatherRows = try kernel("gather_rows")
        gatherAssignments = try kernel("gather_assignments")
        storeKV = try kernel("store_kv")
        prepareAttention = try kernel("prepare_attention")
        attention = try kernel("attention")
        attentionMerge = try kernel("attention_merge")
        attentionPrefill = try kernel("attention_prefill")
        attentionDecode = try kernel("attention_decode")
        prepareLatentAttention = try kernel("prepare_latent_attention")
        latentAttention = try kernel("latent_attention")
        routeTopK = try kernel("route_top_k")
        sortAssignments = try kernel("sort_assignments")
        expertGateUp = try kernel("expert_gate_up")
        expertDown = try kernel("expert_down")
        expertGEMVGateUp = try kernel("expert_gemv_gate_up")
        expertGEMVDownCombine = try kernel("expert_gemv_down_combine")
        combine = try kernel("combine")
        linearRows = try [1, 2, 4].map { try kernel("linear_rows_\($0)") }
        sampleTokens = try kernel("sample_tokens")
        epDispatch = try kernel("ep_dispatch")
        epSignal = try kernel("ep_signal")
        epWait = try kernel("ep_wait")
        epSortReceived = try kernel("ep_sort_received")
        epExpertGateUp = try kernel("ep_expert_gate_up")
        epExpertDown = try kernel("ep_expert_down")
        epGEMVGateUp = try kernel("ep_gemv_gate_up")
        epGEMVDown = try kernel("ep_gemv_down")
        // Above 48 KB of dynamic shared memory a kernel must say so
        // (CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES).
        for (kernel, bytes) in [(expertGateUp, Self.expertSharedBytes(gated: true)), (expertDown, Self.expertSharedBytes(gated: false)),
                                (epExpertGateUp, Self.expertSharedBytes(gated: true)), (epExpertDown, Self.expertSharedBytes(gated: false)),
                                (attentionPrefill, Self.prefillSharedBytes), (attentionDecode, Self.prefillSharedBytes)] {
            try driver.check(driver.cuFuncSetAttribute(kernel.function, 8, Int32(bytes)), "cuFuncSetAttribute(\(kernel.name))")
        }
    }

    /// The grouped GEMM's shared memory: GEMM_STAGES · (GEMM_BM + B rows) · GEMM_ROW bf16 values,
    /// B rows being 2 · GEMM_BN when gate and up are computed together (kernels.cu).
    static func expertSharedBytes(gated: Bool) -> Int { 4 * (64 + (gated ? 128 : 64)) * 72 * 2 }

    /// The prefill and grouped decode attention's shared memory: two stages of keys and values,
    /// PREFILL_KEYS rows of PREFILL_ROW bf16 values each (kernels.cu).
    static let prefillSharedBytes = 2 * 2 * 64 * (128 + 8) * 2
}
