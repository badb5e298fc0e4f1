// Flexpert's CUDA kernels, compiled by NVRTC at start-up (NVRTCCompiler) for the device's sm_XY.
// Weights, activations and the KV cache are bf16 (raw 16-bit words: NVRTC needs no header for
// them); every sum is accumulated in float32, and results are rounded to bf16 where transformers
// rounds them, so that the numbers follow the reference. Dense matmuls go to cuBLAS; everything
// else is here. Every kernel mirrors a CPUBackend operator; `flexpert check-cuda` compares them on
// a GPU, and CI runs these same sources on the CPU through Sources/CUDAKernelEmulator, which
// defines FLEXPERT_EMULATION and supplies its own versions of the few PTX helpers below.

typedef unsigned short bf16;
typedef unsigned int u32;
typedef unsigned long long u64;

#ifndef FLEXPERT_EMULATION
#define DYNAMIC_SHARED(type, name) extern __shared__ type name[]

// 16 bytes global → shared without passing through registers (zeros when `valid` is false).
__device__ __forceinline__ void copy_16(void *shared, const void *global, bool valid) {
    const u32 address = (u32)__cvta_generic_to_shared(shared);
    const int size = valid ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" :: "r"(address), "l"(global), "r"(size));
}

__device__ __forceinline__ void copy_commit() { asm volatile("cp.async.commit_group;\n" ::); }

// Waits until at most `pending` committed groups of copies are still in flight.
template <int pending>
__device__ __forceinline__ void copy_wait() { asm volatile("cp.async.wait_group %0;\n" :: "n"(pending)); }

// Four 8×8 bf16 matrices from shared memory into a warp's mma fragments: lane i gives row i % 8 of
// matrix i / 8; `_trans` hands each lane the transposed elements (B fragments of a row-major tile).
__device__ __forceinline__ void ldmatrix_x4(u32 *r, const void *shared) {
    const u32 address = (u32)__cvta_generic_to_shared(shared);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(address));
}

__device__ __forceinline__ void ldmatrix_x4_trans(u32 *r, const void *shared) {
    const u32 address = (u32)__cvta_generic_to_shared(shared);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(address));
}

// 2^x by the special function unit (flushing denormals: softmax weights that small are zeros).
__device__ __forceinline__ float fast_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

// Two floats to bf16, rounded to nearest even, in one instruction: `low` in the low half.
__device__ __forceinline__ u32 pack_bf16(float low, float high) {
    u32 packed;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(packed) : "f"(high), "f"(low));
    return packed;
}

// c += a · b for one warp: a 16×16 bf16 tile (4 registers of 2 per lane), b 16×8 (2 registers), c 16×8 float32.
__device__ __forceinline__ void mma_bf16(float *c, const u32 *a, const u32 *b) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
// The peer exchange's synchronisation: flags other processes (or GPUs) write, read and written
// at system scope, and the global timer (nanoseconds) that bounds a wait.
__device__ __forceinline__ u64 load_acquire_system(const u64 *address) {
    u64 value;
    asm volatile("ld.acquire.sys.global.u64 %0, [%1];\n" : "=l"(value) : "l"(address) : "memory");
    return value;
}

__device__ __forceinline__ void store_release_system(u64 *address, u64 value) {
    asm volatile("st.release.sys.global.u64 [%0], %1;\n" :: "l"(address), "l"(value) : "memory");
}

__device__ __forceinline__ u64 global_nanoseconds() {
    u64 value;
    asm volatile("mov.u64 %0, %%globaltimer;\n" : "=l"(value));
    return value;
}

__device__ __forceinline__ void spin_pause() { __nanosleep(100); }
#endif

__device__ __forceinline__ float to_float(bf16 v) { return __uint_as_float(((u32)v) << 16); }

// Round to nearest even, as PyTorch does; NaN stays NaN.
__device__ __forceinline__ bf16 to_bf16(float f) {
    u32 bits = __float_as_uint(f);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return (bf16)((bits >> 16) | 0x40);
    bits += 0x7fffu + ((bits >> 16) & 1u);
    return (bf16)(bits >> 16);
}

__device__ __forceinline__ float round_bf16(float f) { return to_float(to_bf16(f)); }

__device__ __forceinline__ float warp_sum(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
    return v;
}

// Block-wide sum for blocks of whole warps; every thread gets the result.
__device__ float block_sum(float v) {
    __shared__ float partial[32];
    v = warp_sum(v);
    const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
    __syncthreads();
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    float total = lane < (int)(blockDim.x / 32) ? partial[lane] : 0.f;
    return warp_sum(total);
}

// ---------------------------------------------------------------------------------------------
// Weights: seeded fills (`--load-format dummy`), the same values CPUBackend computes.

__device__ __forceinline__ u64 splitmix(u64 z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// out[i] = bf16((unit(i) · 2 − 1) · bound), unit(i) from the top 24 bits of splitmix(seed + (i + 1)·γ).
extern "C" __global__ void fill_uniform(bf16 *out, long count, u64 seed, float bound) {
    for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += (long)gridDim.x * blockDim.x) {
        u64 bits = splitmix(seed + (u64)(i + 1) * 0x9e3779b97f4a7c15ull);
        float unit = (float)(bits >> 40) * (1.f / 16777216.f);
        out[i] = to_bf16(__fmul_rn(__fsub_rn(__fmul_rn(unit, 2.f), 1.f), bound));
    }
}

extern "C" __global__ void fill_value(bf16 *out, long count, float value) {
    bf16 v = to_bf16(value);
    for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += (long)gridDim.x * blockDim.x) out[i] = v;
}

// ---------------------------------------------------------------------------------------------
// Elementwise and row operators over bf16 activations.

// out[t, :] = table[ids[t], :]
extern "C" __global__ void embedding(const int *ids, const bf16 *table, bf16 *out, int width) {
    const long t = blockIdx.x, row = (long)ids[t] * width;
    for (int i = threadIdx.x; i < width; i += blockDim.x) out[t * width + i] = table[row + i];
}

// out[t, n] = bf16(out[t, n] + bias[n]) after a cuBLAS matmul.
extern "C" __global__ void add_bias(bf16 *out, const bf16 *bias, long rows, int width) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < rows * width) out[i] = to_bf16(to_float(out[i]) + to_float(bias[i % width]));
}

// One block per row of `width` values: transformers' RMSNorm, bf16(weight · bf16(x · rsqrt(mean(x²) + ε))).
extern "C" __global__ void rms_norm(const bf16 *x, const bf16 *weight, bf16 *out, int width, float epsilon) {
    const long base = (long)blockIdx.x * width;
    float sum = 0.f;
    for (int i = threadIdx.x; i < width; i += blockDim.x) { float v = to_float(x[base + i]); sum += v * v; }
    const float scale = rsqrtf(block_sum(sum) / width + epsilon);
    for (int i = threadIdx.x; i < width; i += blockDim.x)
        out[base + i] = to_bf16(to_float(weight[i]) * round_bf16(to_float(x[base + i]) * scale));
}

// rms_norm of sum = bf16(a + b), which is written too (sum may be a): the residual add and the
// norm after it in one launch, with add's rounding and rms_norm's summation order (same block size).
extern "C" __global__ void add_rms_norm(const bf16 *a, const bf16 *b, const bf16 *weight, bf16 *sum, bf16 *out, int width,
                                        float epsilon) {
    const long base = (long)blockIdx.x * width;
    float squares = 0.f;
    for (int i = threadIdx.x; i < width; i += blockDim.x) {
        const bf16 value = to_bf16(to_float(a[base + i]) + to_float(b[base + i]));
        sum[base + i] = value;
        const float v = to_float(value);
        squares += v * v;
    }
    const float scale = rsqrtf(block_sum(squares) / width + epsilon);
    for (int i = threadIdx.x; i < width; i += blockDim.x)
        out[base + i] = to_bf16(to_float(weight[i]) * round_bf16(to_float(sum[base + i]) * scale));
}

// Rotate pairs (i, i + half) of each head in place, with cos and sin rounded to bf16 as
// transformers does. Grid: tokens; block: threads over heads·half.
extern "C" __global__ void rotary(bf16 *x, const int *positions, const float *cosines, const float *sines,
                                  int width, int head_dim, int half) {
    const int t = blockIdx.x, heads = width / head_dim;
    const float *c = cosines + (long)positions[t] * half, *s = sines + (long)positions[t] * half;
    for (int item = threadIdx.x; item < heads * half; item += blockDim.x) {
        const int head = item / half, i = item % half;
        bf16 *v = x + (long)t * width + head * head_dim;
        const float first = to_float(v[i]), second = to_float(v[i + half]);
        const float cosine = round_bf16(c[i]), sine = round_bf16(s[i]);
        v[i] = to_bf16(round_bf16(first * cosine) + round_bf16(-second * sine));
        v[i + half] = to_bf16(round_bf16(second * cosine) + round_bf16(first * sine));
    }
}

extern "C" __global__ void clamp_values(bf16 *x, long count, float limit) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < count) x[i] = to_bf16(fminf(fmaxf(to_float(x[i]), -limit), limit));
}

// out[r, i] = bf16(bf16(silu(gate)) · up) for gate_up[r] = [gate | up].
extern "C" __global__ void silu_mul(const bf16 *gate_up, bf16 *out, long rows, int width) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * width) return;
    const long r = i / width, c = i % width;
    const float g = to_float(gate_up[r * 2 * width + c]);
    out[i] = to_bf16(round_bf16(g / (1.f + expf(-g))) * to_float(gate_up[r * 2 * width + width + c]));
}

extern "C" __global__ void add(const bf16 *a, const bf16 *b, bf16 *out, long count) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < count) out[i] = to_bf16(to_float(a[i]) + to_float(b[i]));
}

// out += bf16(σ(gate[t]) · y[t])
extern "C" __global__ void add_sigmoid_gated(const bf16 *y, const bf16 *gate, bf16 *out, long rows, int width) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * width) return;
    const float sigma = round_bf16(1.f / (1.f + expf(-to_float(gate[i / width]))));
    out[i] = to_bf16(to_float(out[i]) + round_bf16(sigma * to_float(y[i])));
}

extern "C" __global__ void gather_rows(const bf16 *x, const int *rows, bf16 *out, int width) {
    const long r = blockIdx.x, source = (long)rows[r] * width;
    for (int i = threadIdx.x; i < width; i += blockDim.x) out[r * width + i] = x[source + i];
}

// out[r, :] = x[sorted[r] / top_k, :]: the token of each expert-sorted assignment. width is a
// multiple of 8. Grid: assignments; block: 128.
extern "C" __global__ void gather_assignments(const bf16 *x, const int *sorted, int top_k, bf16 *out, int width) {
    const long r = blockIdx.x, source = (long)(sorted[r] / top_k) * width;
    for (int i = threadIdx.x * 8; i < width; i += blockDim.x * 8) *(uint4 *)(out + r * width + i) = *(const uint4 *)(x + source + i);
}

// ---------------------------------------------------------------------------------------------
// Attention over the paged cache.

extern "C" __global__ void store_kv(const bf16 *keys, const bf16 *values, const int *slots, bf16 *cache_keys,
                                    bf16 *cache_values, int width) {
    const long t = blockIdx.x, slot = slots[t];
    for (int i = threadIdx.x; i < width; i += blockDim.x) {
        cache_keys[slot * width + i] = keys[t * width + i];
        cache_values[slot * width + i] = values[t * width + i];
    }
}

// What attention does before it reads the cache, in one launch: a block per (token, head) of the
// queries, keys and values. Query and key heads are RMS-normalised by their one-head-wide weights
// (when given) and rotated in place with rms_norm's and rotary's rounding and summation order
// (a decode step at small batches pays per launch, and this replaces five); key and value heads
// go to their cache slots as store_kv writes them.
// Grid: (tokens, heads + 2 · kv_heads); block: head_dim threads (a multiple of 32, at most 256).
extern "C" __global__ void prepare_attention(bf16 *queries, bf16 *keys, const bf16 *values, const bf16 *query_norm,
                                             const bf16 *key_norm, float epsilon, const int *positions, const float *cosines,
                                             const float *sines, int half, const int *slots, bf16 *cache_keys,
                                             bf16 *cache_values, int heads, int kv_heads, int head_dim) {
    __shared__ float normed[256];
    const long t = blockIdx.x, slot = slots[t];
    const int head = blockIdx.y, i = threadIdx.x, kv_width = kv_heads * head_dim;
    if (head >= heads + kv_heads) {
        const int h = head - heads - kv_heads;
        cache_values[slot * kv_width + h * head_dim + i] = values[t * kv_width + h * head_dim + i];
        return;
    }
    const bool is_query = head < heads;
    bf16 *v = is_query ? queries + (t * heads + head) * head_dim : keys + t * kv_width + (head - heads) * head_dim;
    const bf16 *weight = is_query ? query_norm : key_norm;
    float value = to_float(v[i]);
    if (weight) {
        const float scale = rsqrtf(block_sum(value * value) / head_dim + epsilon);
        value = to_float(to_bf16(to_float(weight[i]) * round_bf16(value * scale)));
    }
    normed[i] = value;
    __syncthreads();
    if (i < half) {
        const float *c = cosines + (long)positions[t] * half, *s = sines + (long)positions[t] * half;
        const float first = normed[i], second = normed[i + half];
        const float cosine = round_bf16(c[i]), sine = round_bf16(s[i]);
        v[i] = to_bf16(round_bf16(first * cosine) + round_bf16(-second * sine));
        v[i + half] = to_bf16(round_bf16(second * cosine) + round_bf16(first * sine));
    } else if (i >= 2 * half) {
        v[i] = to_bf16(value);
    }
    if (!is_query) {
        __syncthreads();
        cache_keys[slot * kv_width + (head - heads) * head_dim + i] = v[i];
    }
}

// What latent attention does before it reads the cache, in one launch. Block `heads` of a token
// writes its cache row: the latent RMS-normalised (rms_norm's rounding) and the rotary key rotated
// (rotary's); block h < heads rotates head h's rotary query into its place in `latent_queries`,
// after the head's latent part. Grid: (tokens, heads + 1); block: 256.
extern "C" __global__ void prepare_latent_attention(const bf16 *queries, const bf16 *latent, const bf16 *norm, float epsilon,
                                                    const int *positions, const float *cosines, const float *sines,
                                                    const int *slots, bf16 *cache, bf16 *latent_queries, int heads,
                                                    int nope, int rope, int latent_width) {
    const long t = blockIdx.x;
    const int head = blockIdx.y, half = rope / 2, width = latent_width + rope;
    const float *c = cosines + (long)positions[t] * half, *s = sines + (long)positions[t] * half;
    const bf16 *source;
    bf16 *target;
    if (head == heads) {
        const bf16 *row = latent + t * width;
        bf16 *slot_row = cache + (long)slots[t] * width;
        float squares = 0.f;
        for (int i = threadIdx.x; i < latent_width; i += blockDim.x) { const float v = to_float(row[i]); squares += v * v; }
        const float scale = rsqrtf(block_sum(squares) / latent_width + epsilon);
        for (int i = threadIdx.x; i < latent_width; i += blockDim.x)
            slot_row[i] = to_bf16(to_float(norm[i]) * round_bf16(to_float(row[i]) * scale));
        source = row + latent_width;
        target = slot_row + latent_width;
    } else {
        source = queries + (t * heads + head) * (nope + rope) + nope;
        target = latent_queries + (t * heads + head) * width + latent_width;
    }
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        const float first = to_float(source[i]), second = to_float(source[i + half]);
        const float cosine = round_bf16(c[i]), sine = round_bf16(s[i]);
        target[i] = to_bf16(round_bf16(first * cosine) + round_bf16(-second * sine));
        target[i + half] = to_bf16(round_bf16(second * cosine) + round_bf16(first * sine));
    }
}

#define LATENT_KEYS 16
#define LATENT_MAX_WIDTH 576
#define LATENT_MAX_LATENT 512

// Multi-query attention in the latent space: one block per (token, `heads_per_block` heads, split
// of the keys), one warp per head. Every head reads the same cached rows, so a tile of LATENT_KEYS
// rows comes through shared memory (bf16, 16-byte loads) once for the block's heads. Lane l
// scores a row by dimensions l, l + 32, … (a warp sum) and accumulates latent dimensions
// l + 32·i; softmax is online. Splits and their merge as `attention`'s, with partial
// [tokens, heads, splits, latent + 2]. width a multiple of 8, at most 576; latent at most 512.
// Grid: (tokens, heads / heads_per_block, splits); block: 32 · heads_per_block.
extern "C" __global__ void latent_attention(const bf16 *queries, const bf16 *cache, const int *positions,
                                            const int *token_requests, const int *block_tables, int table_width, bf16 *out,
                                            int heads, int latent, int width, int block_size, float scale,
                                            int heads_per_block, float *partial) {
    __shared__ __align__(16) bf16 rows[LATENT_KEYS][LATENT_MAX_WIDTH];
    __shared__ float query[8][LATENT_MAX_WIDTH];
    const int t = blockIdx.x, warp = threadIdx.x / 32, lane = threadIdx.x & 31;
    const int head = blockIdx.y * heads_per_block + warp;
    const int position = positions[t];
    const int share = (position + gridDim.z) / gridDim.z;
    const int begin = blockIdx.z * share, end = min(position + 1, begin + share);
    const int *table = block_tables + (long)token_requests[t] * table_width;
    const bf16 *q = queries + ((long)t * heads + head) * width;
    for (int d = lane; d < width; d += 32) query[warp][d] = to_float(q[d]);
    float maximum = __int_as_float(0xff800000), total = 0.f;
    float acc[LATENT_MAX_LATENT / 32];
    #pragma unroll
    for (int i = 0; i < LATENT_MAX_LATENT / 32; ++i) acc[i] = 0.f;
    const int chunks = width / 8;
    for (int start = begin; start < end; start += LATENT_KEYS) {
        const int count = min(LATENT_KEYS, end - start);
        __syncthreads();
        for (int chunk = threadIdx.x; chunk < count * chunks; chunk += blockDim.x) {
            const int j = chunk / chunks, d = (chunk % chunks) * 8, key = start + j;
            const long slot = (long)table[key / block_size] * block_size + key % block_size;
            *(uint4 *)&rows[j][d] = *(const uint4 *)(cache + slot * width + d);
        }
        __syncthreads();
        for (int j = 0; j < count; ++j) {
            float dot = 0.f;
            for (int d = lane; d < width; d += 32) dot += query[warp][d] * to_float(rows[j][d]);
            const float score = warp_sum(dot) * scale;
            const float next_max = fmaxf(maximum, score);
            const float correction = expf(maximum - next_max), p = expf(score - next_max);
            total = total * correction + p;
            maximum = next_max;
            #pragma unroll
            for (int i = 0; i < LATENT_MAX_LATENT / 32; ++i) {
                const int d = lane + 32 * i;
                if (d < latent) acc[i] = acc[i] * correction + p * to_float(rows[j][d]);
            }
        }
    }
    if (gridDim.z > 1) {
        float *target = partial + (((long)t * heads + head) * gridDim.z + blockIdx.z) * (latent + 2);
        if (lane == 0) {
            target[0] = maximum;
            target[1] = total;
        }
        #pragma unroll
        for (int i = 0; i < LATENT_MAX_LATENT / 32; ++i) {
            const int d = lane + 32 * i;
            if (d < latent) target[2 + d] = acc[i];
        }
        return;
    }
    bf16 *target = out + ((long)t * heads + head) * latent;
    const float inverse = 1.f / total;
    #pragma unroll
    for (int i = 0; i < LATENT_MAX_LATENT / 32; ++i) {
        const int d = lane + 32 * i;
        if (d < latent) target[d] = to_bf16(acc[i] * inverse);
    }
}

#define ATTENTION_KEYS 32
#define ATTENTION_MAX_HEAD_DIM 128

// One block per (token, group of `heads_per_block` query heads that share a KV head, split of the
// keys); one warp per query head. Keys and values come through shared memory 32 at a time in
// 16-byte loads, so each is read once for all the block's heads; softmax is online (running
// maximum and sum), so there is no score buffer. Lane j scores key j of a tile; lane l
// accumulates dimensions l, l + 32, …. A decode step has few tokens, so the keys are split over
// `splits` blocks (a share each) to fill the GPU: each then writes its maximum, sum and
// unnormalised output to `partial` [tokens, heads, splits, head_dim + 2], and attention_merge
// combines them. With one split the block writes the output itself. head_dim is a multiple of 8.
// Grid: (tokens, heads / heads_per_block, splits); block: 32 · heads_per_block.
extern "C" __global__ void attention(const bf16 *queries, const bf16 *cache_keys, const bf16 *cache_values,
                                     const int *positions, const int *token_requests, const int *block_tables,
                                     int table_width, bf16 *out, int heads, int kv_heads, int head_dim, int block_size,
                                     float scale, int window, int heads_per_block, float *partial, const bf16 *sinks) {
    __shared__ float keys[ATTENTION_KEYS][ATTENTION_MAX_HEAD_DIM + 1];
    __shared__ float values[ATTENTION_KEYS][ATTENTION_MAX_HEAD_DIM];
    __shared__ float query[8][ATTENTION_MAX_HEAD_DIM];
    const int t = blockIdx.x, warp = threadIdx.x / 32, lane = threadIdx.x & 31;
    const int head = blockIdx.y * heads_per_block + warp;
    const int kv_head = (blockIdx.y * heads_per_block) / (heads / kv_heads);
    const int position = positions[t];
    const int first = window > 0 ? max(0, position - window + 1) : 0;
    const int share = (position - first + gridDim.z) / gridDim.z;
    const int begin = first + blockIdx.z * share, end = min(position + 1, begin + share);
    const int *table = block_tables + (long)token_requests[t] * table_width;
    const int kv_width = kv_heads * head_dim, chunks_per_key = head_dim / 8;
    const bf16 *q = queries + ((long)t * heads + head) * head_dim;
    for (int d = lane; d < head_dim; d += 32) query[warp][d] = to_float(q[d]) * scale;
    float maximum = __int_as_float(0xff800000), total = 0.f;
    float acc[ATTENTION_MAX_HEAD_DIM / 32] = {0.f, 0.f, 0.f, 0.f};
    for (int start = begin; start < end; start += ATTENTION_KEYS) {
        const int count = min(ATTENTION_KEYS, end - start);
        __syncthreads();
        for (int chunk = threadIdx.x; chunk < count * chunks_per_key; chunk += blockDim.x) {
            const int j = chunk / chunks_per_key, d = (chunk % chunks_per_key) * 8, key = start + j;
            const long slot = (long)table[key / block_size] * block_size + key % block_size;
            const long at = slot * kv_width + (long)kv_head * head_dim + d;
            const uint4 k8 = *(const uint4 *)(cache_keys + at), v8 = *(const uint4 *)(cache_values + at);
            const u32 kw[4] = {k8.x, k8.y, k8.z, k8.w}, vw[4] = {v8.x, v8.y, v8.z, v8.w};
            #pragma unroll
            for (int i = 0; i < 4; ++i) {
                keys[j][d + 2 * i] = __uint_as_float(kw[i] << 16);
                keys[j][d + 2 * i + 1] = __uint_as_float(kw[i] & 0xffff0000u);
                values[j][d + 2 * i] = __uint_as_float(vw[i] << 16);
                values[j][d + 2 * i + 1] = __uint_as_float(vw[i] & 0xffff0000u);
            }
        }
        __syncthreads();
        float score = __int_as_float(0xff800000);
        if (lane < count) {
            score = 0.f;
            for (int d = 0; d < head_dim; ++d) score += query[warp][d] * keys[lane][d];
        }
        const float tile_max = warp_max(score);
        const float next_max = fmaxf(maximum, tile_max);
        const float p = lane < count ? expf(score - next_max) : 0.f;
        const float correction = expf(maximum - next_max);
        total = total * correction + warp_sum(p);
        maximum = next_max;
        #pragma unroll
        for (int i = 0; i < ATTENTION_MAX_HEAD_DIM / 32; ++i) acc[i] *= correction;
        for (int j = 0; j < count; ++j) {
            const float pj = __shfl_sync(0xffffffffu, p, j);
            #pragma unroll
            for (int i = 0; i < ATTENTION_MAX_HEAD_DIM / 32; ++i) {
                const int d = lane + 32 * i;
                if (d < head_dim) acc[i] += pj * values[j][d];
            }
        }
    }
    if (gridDim.z > 1) {
        float *target = partial + (((long)t * heads + head) * gridDim.z + blockIdx.z) * (head_dim + 2);
        if (lane == 0) {
            target[0] = maximum;
            target[1] = total;
        }
        #pragma unroll
        for (int i = 0; i < ATTENTION_MAX_HEAD_DIM / 32; ++i) {
            const int d = lane + 32 * i;
            if (d < head_dim) target[2 + d] = acc[i];
        }
        return;
    }
    bf16 *target = out + ((long)t * heads + head) * head_dim;
    // A sink (GPT-OSS) joins the denominator only.
    const float inverse = 1.f / (total + (sinks ? expf(to_float(sinks[head]) - maximum) : 0.f));
    #pragma unroll
    for (int i = 0; i < ATTENTION_MAX_HEAD_DIM / 32; ++i) {
        const int d = lane + 32 * i;
        if (d < head_dim) target[d] = to_bf16(acc[i] * inverse);
    }
}

// Attention for steps of many tokens per request (prefill) on tensor cores, in FlashAttention-2's
// shape: a block takes 16 consecutive tokens of the step and `heads_per_block` query heads sharing
// a KV head, one warp per head with the 16 tokens as the rows of mma.m16n8k16 tiles, so each tile
// of keys and values is read from memory once for 16 · heads_per_block query rows. Tiles of 64
// keys and values come into shared memory by cp.async, double-buffered (the next tile's copies run
// under this tile's products; rows padded by 8 bf16 so that ldmatrix's eight rows hit distinct
// banks), and reach the tensor cores by ldmatrix (V transposed on the way). S = Q·Kᵀ and O += P·V
// accumulate in float32; softmax is online, in base 2 (the scale folded with log2 e, one exp2 per
// score), and P enters P·V as bf16. Keys past the tile's last position are never loaded (causal
// tiles skipped), and the heaviest tiles (the latest tokens) are scheduled first. Tokens of the
// tile from other requests (a tile on a boundary) are done in further passes over their own
// request's keys. Scores are scaled after the product (Q stays exact in bf16), so results match
// `attention` to float32 rounding and P's bf16.
// A step of few tokens over long contexts (a prompt after its cached prefix, a small chunk) makes
// few blocks: then each pass's keys are split over `gridDim.z` blocks, which write their maximum,
// sum and unnormalised output to `partial` [tokens, heads, splits, head_dim + 2] for
// attention_merge, as `attention` does. head_dim a multiple of 16, at most 128.
// Grid: (ceil(tokens / 16), heads / heads_per_block, splits); block: 32 · heads_per_block;
// dynamic shared memory: 2 stages · (keys, values) · PREFILL_TILE bf16 (CUDAKernels.prefillSharedBytes).
#define PREFILL_KEYS 64
#define PREFILL_ROW (ATTENTION_MAX_HEAD_DIM + 8)
#define PREFILL_TILE (PREFILL_KEYS * PREFILL_ROW)

// Keys start … start + PREFILL_KEYS − 1 of one KV head of a paged cache (zeros from `end` on) into
// a stage's keys and values by cp.async, committed as one group: the calling thread copies chunk
// `chunk` (8 bf16) of every `key_step`-th key from `first_key`, so no thread divides per key (a
// power-of-two block size finds a key's block by shifts).
__device__ __forceinline__ void copy_kv_tile(bf16 *keys, bf16 *values, const bf16 *cache_keys, const bf16 *cache_values,
                                             const int *table, int start, int end, int block_size, int kv_width,
                                             long head_offset, int first_key, int key_step, int chunk) {
    const bool blocks_pow2 = (block_size & (block_size - 1)) == 0;
    const int block_shift = __ffs(block_size) - 1;
    if (first_key < key_step)
        for (int j = first_key; j < PREFILL_KEYS; j += key_step) {
            const int key = start + j;
            const bool valid = key < end;
            long at = 0;
            if (valid) {
                const int block = blocks_pow2 ? key >> block_shift : key / block_size;
                const int row = blocks_pow2 ? key & (block_size - 1) : key % block_size;
                at = ((long)table[block] * block_size + row) * kv_width + head_offset + chunk;
            }
            copy_16(keys + j * PREFILL_ROW + chunk, cache_keys + at, valid);
            copy_16(values + j * PREFILL_ROW + chunk, cache_values + at, valid);
        }
    copy_commit();
}

// One tile's scores through the online softmax, for a warp's rows `group` and `group + 8` (the C
// fragments of N 8-key mma tiles, masked keys −∞): the running maximum (base-2 units, the scale
// folded with log2 e and applied after the product) and sum advance, O is rescaled, and the scores
// become P. A row that has seen no key yet subtracts 0, so that its −∞ scores give 0, not NaN.
template <int N>
__device__ __forceinline__ void online_softmax_tile(float (&scores)[N][4], float (&o)[ATTENTION_MAX_HEAD_DIM / 8][4],
                                                    float (&maximum)[2], float (&total)[2], float scale2) {
    const float negative_infinity = __int_as_float(0xff800000);
    // The maximum of the unscaled scores (the scale is positive), in base-2 units after.
    float tile_max[2] = {negative_infinity, negative_infinity};
    #pragma unroll
    for (int n = 0; n < N; ++n)
        #pragma unroll
        for (int i = 0; i < 4; ++i) tile_max[i >> 1] = fmaxf(tile_max[i >> 1], scores[n][i]);
    float correction[2], subtracted[2];
    #pragma unroll
    for (int h = 0; h < 2; ++h) {
        tile_max[h] = fmaxf(tile_max[h], __shfl_xor_sync(0xffffffffu, tile_max[h], 1));
        tile_max[h] = fmaxf(tile_max[h], __shfl_xor_sync(0xffffffffu, tile_max[h], 2));
        const float next = fmaxf(maximum[h], tile_max[h] * scale2);
        correction[h] = next == negative_infinity ? 1.f : fast_exp2(maximum[h] - next);
        maximum[h] = next;
        total[h] *= correction[h];
        subtracted[h] = next == negative_infinity ? 0.f : next;
    }
    #pragma unroll
    for (int n = 0; n < N; ++n)
        #pragma unroll
        for (int i = 0; i < 4; ++i) {
            const float p = fast_exp2(fmaf(scores[n][i], scale2, -subtracted[i >> 1]));
            scores[n][i] = p;
            total[i >> 1] += p;
        }
    #pragma unroll
    for (int d = 0; d < ATTENTION_MAX_HEAD_DIM / 8; ++d) {
        o[d][0] *= correction[0];
        o[d][1] *= correction[0];
        o[d][2] *= correction[1];
        o[d][3] *= correction[1];
    }
}

extern "C" __global__ void __launch_bounds__(256) attention_prefill(
    const bf16 *queries, const bf16 *cache_keys, const bf16 *cache_values, const int *positions,
    const int *token_requests, const int *block_tables, int table_width, bf16 *out, int tokens, int heads, int kv_heads,
    int head_dim, int block_size, float scale, int window, int heads_per_block, const bf16 *sinks, float *partial) {
    // Two stages of [keys, values][PREFILL_KEYS][PREFILL_ROW].
    DYNAMIC_SHARED(bf16, tiles);
    __shared__ int row_request[16], row_position[16], row_first[16];
    const float negative_infinity = __int_as_float(0xff800000);
    const float log2e = 1.4426950408889634f, scale2 = scale * log2e;
    const int warp = threadIdx.x / 32, lane = threadIdx.x & 31, group = lane >> 2, pair = (lane & 3) * 2;
    const int t0 = ((int)gridDim.x - 1 - (int)blockIdx.x) * 16;
    const int head = blockIdx.y * heads_per_block + warp;
    const int kv_head = (blockIdx.y * heads_per_block) / (heads / kv_heads);
    // 16-dim steps of Q·Kᵀ, and pairs of 8-dim tiles of P·V: the same count.
    const int kv_width = kv_heads * head_dim, k_steps = head_dim / 16;
    if (threadIdx.x < 16) {
        const int t = t0 + threadIdx.x;
        const int position = t < tokens ? positions[t] : -1;
        row_request[threadIdx.x] = t < tokens ? token_requests[t] : -1;
        row_position[threadIdx.x] = position;
        row_first[threadIdx.x] = window > 0 ? max(0, position - window + 1) : 0;
    }
    __syncthreads();
    // Q's fragments for rows `group` and `group + 8` (the tile's tokens), dims 16·s + pair (+ 8).
    u32 q[ATTENTION_MAX_HEAD_DIM / 16][4];
    #pragma unroll
    for (int s = 0; s < ATTENTION_MAX_HEAD_DIM / 16; ++s) {
        if (s >= k_steps) break;
        #pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int t = t0 + group + (i & 1) * 8, d = 16 * s + pair + (i >> 1) * 8;
            q[s][i] = t < tokens ? *(const u32 *)(queries + ((long)t * heads + head) * head_dim + d) : 0u;
        }
    }
    // Where this lane's ldmatrix rows start within a tile: K's (keys 8 · (lane / 16) + lane % 8,
    // dims 8 · (lane / 8 % 2)), V's (keys lane % 8 + 8 · (lane / 8 % 2), dims 8 · (lane / 16)).
    const int k_row = ((lane >> 4) * 8 + (lane & 7)) * PREFILL_ROW + ((lane >> 3) & 1) * 8;
    const int v_row = ((lane & 7) + ((lane >> 3) & 1) * 8) * PREFILL_ROW + (lane >> 4) * 8;
    // Each thread copies one 16-byte chunk of every `key_step`-th key of a tile.
    const int chunks = head_dim / 8, key_step = blockDim.x / chunks;
    const int my_key = threadIdx.x / chunks, my_chunk = (threadIdx.x % chunks) * 8;
    unsigned done = 0;
    for (;;) {
        // The next pass: the request of the first row not done, its rows, and the keys they see.
        int request = -1;
        for (int r = 0; r < 16; ++r)
            if (!((done >> r) & 1u) && row_request[r] >= 0) { request = row_request[r]; break; }
        if (request < 0) break;
        unsigned active = 0;
        int begin = 0x7fffffff, end = 0;
        // Keys from `last_first` to `first_last` are seen by every row of the pass.
        int last_first = 0, first_last = 0x7fffffff;
        for (int r = 0; r < 16; ++r)
            if (row_request[r] == request) {
                active |= 1u << r;
                begin = min(begin, row_first[r]);
                end = max(end, row_position[r] + 1);
                last_first = max(last_first, row_first[r]);
                first_last = min(first_last, row_position[r]);
            }
        done |= active;
        // This block's share of the pass's keys.
        const int share = (end - begin + (int)gridDim.z - 1) / (int)gridDim.z;
        begin += (int)blockIdx.z * share;
        end = min(end, begin + share);
        const int *table = block_tables + (long)request * table_width;
        int mine_first[2], mine_last[2];
        #pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int r = group + 8 * h;
            const bool in_pass = (active >> r) & 1u;
            mine_first[h] = in_pass ? row_first[r] : 1;
            mine_last[h] = in_pass ? row_position[r] : 0;   // an empty range for rows of other passes
        }
        float maximum[2] = {negative_infinity, negative_infinity}, total[2] = {0.f, 0.f};
        float o[ATTENTION_MAX_HEAD_DIM / 8][4];
        #pragma unroll
        for (int d = 0; d < ATTENTION_MAX_HEAD_DIM / 8; ++d)
            #pragma unroll
            for (int i = 0; i < 4; ++i) o[d][i] = 0.f;
        const int key_tiles = begin < end ? (end - begin + PREFILL_KEYS - 1) / PREFILL_KEYS : 0;
        // Copies tile `index` of this share into stage `stage`.
        auto load = [&](int index, int stage) {
            bf16 *keys = tiles + stage * 2 * PREFILL_TILE;
            copy_kv_tile(keys, keys + PREFILL_TILE, cache_keys, cache_values, table, begin + index * PREFILL_KEYS, end,
                         block_size, kv_width, (long)kv_head * head_dim, my_key, key_step, my_chunk);
        };
        if (key_tiles > 0) load(0, 0);
        for (int index = 0; index < key_tiles; ++index) {
            if (index + 1 < key_tiles) {
                load(index + 1, (index + 1) & 1);
                copy_wait<1>();
            } else {
                copy_wait<0>();
            }
            __syncthreads();
            const bf16 *keys = tiles + (index & 1) * 2 * PREFILL_TILE, *values = keys + PREFILL_TILE;
            const int start = begin + index * PREFILL_KEYS;
            float scores[PREFILL_KEYS / 8][4];
            #pragma unroll
            for (int n = 0; n < PREFILL_KEYS / 8; ++n)
                #pragma unroll
                for (int i = 0; i < 4; ++i) scores[n][i] = 0.f;
            #pragma unroll
            for (int s = 0; s < ATTENTION_MAX_HEAD_DIM / 16; ++s) {
                if (s >= k_steps) break;
                #pragma unroll
                for (int n = 0; n < PREFILL_KEYS / 8; n += 2) {
                    u32 b[4];
                    ldmatrix_x4(b, keys + 8 * n * PREFILL_ROW + 16 * s + k_row);
                    mma_bf16(scores[n], q[s], b);
                    mma_bf16(scores[n + 1], q[s], b + 2);
                }
            }
            // Only tiles on the diagonal, a window's edge, the share's end or a request boundary mask.
            if (active != 0xffffu || start < last_first || start + PREFILL_KEYS - 1 > first_last || start + PREFILL_KEYS > end) {
                #pragma unroll
                for (int n = 0; n < PREFILL_KEYS / 8; ++n)
                    #pragma unroll
                    for (int i = 0; i < 4; ++i) {
                        const int h = i >> 1, key = start + 8 * n + pair + (i & 1);
                        const bool seen = key >= mine_first[h] && key <= mine_last[h] && key < end;
                        if (!seen) scores[n][i] = negative_infinity;
                    }
            }
            online_softmax_tile(scores, o, maximum, total, scale2);
            #pragma unroll
            for (int block = 0; block < PREFILL_KEYS / 16; ++block) {
                const u32 a[4] = {pack_bf16(scores[2 * block][0], scores[2 * block][1]),
                                  pack_bf16(scores[2 * block][2], scores[2 * block][3]),
                                  pack_bf16(scores[2 * block + 1][0], scores[2 * block + 1][1]),
                                  pack_bf16(scores[2 * block + 1][2], scores[2 * block + 1][3])};
                #pragma unroll
                for (int d = 0; d < ATTENTION_MAX_HEAD_DIM / 16; ++d) {
                    if (d >= k_steps) break;
                    u32 b[4];
                    ldmatrix_x4_trans(b, values + 16 * block * PREFILL_ROW + 16 * d + v_row);
                    mma_bf16(o[2 * d], a, b);
                    mma_bf16(o[2 * d + 1], a, b + 2);
                }
            }
            // Every warp is done with this stage before the next iteration's copies refill it.
            __syncthreads();
        }
        #pragma unroll
        for (int h = 0; h < 2; ++h) {
            total[h] += __shfl_xor_sync(0xffffffffu, total[h], 1);
            total[h] += __shfl_xor_sync(0xffffffffu, total[h], 2);
        }
        if (gridDim.z > 1) {
            #pragma unroll
            for (int h = 0; h < 2; ++h) {
                const int r = group + 8 * h, t = t0 + r;
                if (!((active >> r) & 1u)) continue;
                float *target = partial + (((long)t * heads + head) * gridDim.z + blockIdx.z) * (head_dim + 2);
                if (pair == 0) {
                    // attention_merge works in natural units.
                    target[0] = maximum[h] * 0.6931471805599453f;
                    target[1] = total[h];
                }
                #pragma unroll
                for (int d = 0; d < ATTENTION_MAX_HEAD_DIM / 8; ++d) {
                    if (d >= 2 * k_steps) break;
                    target[2 + 8 * d + pair] = o[d][2 * h];
                    target[2 + 8 * d + pair + 1] = o[d][2 * h + 1];
                }
            }
            continue;
        }
        #pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int r = group + 8 * h, t = t0 + r;
            if (!((active >> r) & 1u)) continue;
            const float sink = sinks ? fast_exp2(to_float(sinks[head]) * log2e - maximum[h]) : 0.f;
            const float inverse = 1.f / (total[h] + sink);
            bf16 *target = out + ((long)t * heads + head) * head_dim;
            #pragma unroll
            for (int d = 0; d < ATTENTION_MAX_HEAD_DIM / 8; ++d) {
                if (d >= 2 * k_steps) break;
                target[8 * d + pair] = to_bf16(o[d][2 * h] * inverse);
                target[8 * d + pair + 1] = to_bf16(o[d][2 * h + 1] * inverse);
            }
        }
    }
}

// Decode attention on tensor cores: a block per (token, KV head, split) whose warps take the
// query heads of the KV head (at most 16) as the rows of their mma.m16n8k16 tiles, so that each
// key and value is read from memory once, and from shared memory once, for all of them (the
// scalar `attention` reads every key from shared memory once per head). Tiles of 64 keys come in by
// cp.async, double-buffered, as in attention_prefill; warp w takes keys 16w … 16w + 15 of each.
// The four warps' maxima, sums and outputs merge through shared memory at the end; with several
// splits the block writes one partial (maximum in natural-log units, sum, unnormalised output) for
// attention_merge. head_dim a multiple of 16, at most 128.
// Grid: (tokens, kv_heads, splits); block: 128; dynamic shared memory: as attention_prefill's.
extern "C" __global__ void __launch_bounds__(128) attention_decode(
    const bf16 *queries, const bf16 *cache_keys, const bf16 *cache_values, const int *positions,
    const int *token_requests, const int *block_tables, int table_width, bf16 *out, int heads, int kv_heads,
    int head_dim, int block_size, float scale, int window, float *partial, const bf16 *sinks) {
    DYNAMIC_SHARED(bf16, tiles);
    const float negative_infinity = __int_as_float(0xff800000);
    const float log2e = 1.4426950408889634f, scale2 = scale * log2e;
    const int warp = threadIdx.x / 32, lane = threadIdx.x & 31, group = lane >> 2, pair = (lane & 3) * 2;
    const int t = blockIdx.x, rows = heads / kv_heads, kv_head = blockIdx.y, head0 = kv_head * rows;
    const int position = positions[t];
    const int first = window > 0 ? max(0, position - window + 1) : 0;
    const int share = (position + 1 - first + (int)gridDim.z - 1) / (int)gridDim.z;
    const int begin = first + (int)blockIdx.z * share, end = min(position + 1, begin + share);
    const int *table = block_tables + (long)token_requests[t] * table_width;
    const int kv_width = kv_heads * head_dim, k_steps = head_dim / 16;
    // Q's fragments: row r is query head head0 + r; rows past the group's heads are zeros.
    u32 q[ATTENTION_MAX_HEAD_DIM / 16][4];
    #pragma unroll
    for (int s = 0; s < ATTENTION_MAX_HEAD_DIM / 16; ++s) {
        if (s >= k_steps) break;
        #pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int r = group + (i & 1) * 8, d = 16 * s + pair + (i >> 1) * 8;
            q[s][i] = r < rows ? *(const u32 *)(queries + ((long)t * heads + head0 + r) * head_dim + d) : 0u;
        }
    }
    const int k_row = ((lane >> 4) * 8 + (lane & 7)) * PREFILL_ROW + ((lane >> 3) & 1) * 8;
    const int v_row = ((lane & 7) + ((lane >> 3) & 1) * 8) * PREFILL_ROW + (lane >> 4) * 8;
    const int chunks = head_dim / 8, key_step = blockDim.x / chunks;
    const int my_key = threadIdx.x / chunks, my_chunk = (threadIdx.x % chunks) * 8;
    float maximum[2] = {negative_infinity, negative_infinity}, total[2] = {0.f, 0.f};
    float o[ATTENTION_MAX_HEAD_DIM / 8][4];
    #pragma unroll
    for (int d = 0; d < ATTENTION_MAX_HEAD_DIM / 8; ++d)
        #pragma unroll
        for (int i = 0; i < 4; ++i) o[d][i] = 0.f;
    const int key_tiles = begin < end ? (end - begin + PREFILL_KEYS - 1) / PREFILL_KEYS : 0;
    auto load = [&](int index, int stage) {
        bf16 *keys = tiles + stage * 2 * PREFILL_TILE;
        copy_kv_tile(keys, keys + PREFILL_TILE, cache_keys, cache_values, table, begin + index * PREFILL_KEYS, end,
                     block_size, kv_width, (long)kv_head * head_dim, my_key, key_step, my_chunk);
    };
    if (key_tiles > 0) load(0, 0);
    for (int index = 0; index < key_tiles; ++index) {
        if (index + 1 < key_tiles) {
            load(index + 1, (index + 1) & 1);
            copy_wait<1>();
        } else {
            copy_wait<0>();
        }
        __syncthreads();
        // This warp's 16 keys of the tile.
        const bf16 *keys = tiles + (index & 1) * 2 * PREFILL_TILE + 16 * warp * PREFILL_ROW;
        const bf16 *values = keys + PREFILL_TILE;
        const int start = begin + index * PREFILL_KEYS + 16 * warp;
        float scores[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
        #pragma unroll
        for (int s = 0; s < ATTENTION_MAX_HEAD_DIM / 16; ++s) {
            if (s >= k_steps) break;
            u32 b[4];
            ldmatrix_x4(b, keys + 16 * s + k_row);
            mma_bf16(scores[0], q[s], b);
            mma_bf16(scores[1], q[s], b + 2);
        }
        // Every row sees every key of the share: only its end masks.
        if (start + 16 > end) {
            #pragma unroll
            for (int n = 0; n < 2; ++n)
                #pragma unroll
                for (int i = 0; i < 4; ++i)
                    if (start + 8 * n + pair + (i & 1) >= end) scores[n][i] = negative_infinity;
        }
        online_softmax_tile(scores, o, maximum, total, scale2);
        const u32 a[4] = {pack_bf16(scores[0][0], scores[0][1]), pack_bf16(scores[0][2], scores[0][3]),
                          pack_bf16(scores[1][0], scores[1][1]), pack_bf16(scores[1][2], scores[1][3])};
        #pragma unroll
        for (int d = 0; d < ATTENTION_MAX_HEAD_DIM / 16; ++d) {
            if (d >= k_steps) break;
            u32 b[4];
            ldmatrix_x4_trans(b, values + 16 * d + v_row);
            mma_bf16(o[2 * d], a, b);
            mma_bf16(o[2 * d + 1], a, b + 2);
        }
        __syncthreads();
    }
    #pragma unroll
    for (int h = 0; h < 2; ++h) {
        total[h] += __shfl_xor_sync(0xffffffffu, total[h], 1);
        total[h] += __shfl_xor_sync(0xffffffffu, total[h], 2);
    }
    // The warps' states, [warp][16 rows][head_dim + 2] floats over the tiles' memory.
    __syncthreads();
    float *states = (float *)tiles;
    const int stride = head_dim + 2;
    #pragma unroll
    for (int h = 0; h < 2; ++h) {
        float *state = states + (warp * 16 + group + 8 * h) * stride;
        if (pair == 0) {
            state[0] = maximum[h];
            state[1] = total[h];
        }
        #pragma unroll
        for (int d = 0; d < ATTENTION_MAX_HEAD_DIM / 8; ++d) {
            if (d >= 2 * k_steps) break;
            state[2 + 8 * d + pair] = o[d][2 * h];
            state[3 + 8 * d + pair] = o[d][2 * h + 1];
        }
    }
    __syncthreads();
    for (int e = threadIdx.x; e < rows * head_dim; e += blockDim.x) {
        const int r = e / head_dim, d = e % head_dim;
        float top = negative_infinity;
        for (int w = 0; w < 4; ++w) top = fmaxf(top, states[(w * 16 + r) * stride]);
        float sum = 0.f, value = 0.f;
        for (int w = 0; w < 4; ++w) {
            const float *state = states + (w * 16 + r) * stride;
            const float weight = state[0] == negative_infinity ? 0.f : fast_exp2(state[0] - top);
            sum += weight * state[1];
            value += weight * state[2 + d];
        }
        const long row = (long)t * heads + head0 + r;
        if (gridDim.z > 1) {
            float *target = partial + (row * gridDim.z + blockIdx.z) * stride;
            if (d == 0) {
                target[0] = top * 0.6931471805599453f;
                target[1] = sum;
            }
            target[2 + d] = value;
        } else {
            const float sink = sinks ? fast_exp2(to_float(sinks[head0 + r]) * log2e - top) : 0.f;
            out[row * head_dim + d] = to_bf16(value / (sum + sink));
        }
    }
}

// Combines the splits of attention: out = Σ e^(m_s − m) · acc_s / Σ e^(m_s − m) · sum_s, where a
// split without keys has m_s = −∞ and contributes nothing.
// Grid: (tokens, heads); block: at least head_dim threads.
extern "C" __global__ void attention_merge(const float *partial, bf16 *out, int heads, int head_dim, int splits,
                                           const bf16 *sinks) {
    const long row = (long)blockIdx.x * heads + blockIdx.y;
    const float *parts = partial + row * splits * (head_dim + 2);
    float maximum = __int_as_float(0xff800000);
    for (int s = 0; s < splits; ++s) maximum = fmaxf(maximum, parts[s * (head_dim + 2)]);
    float total = 0.f, sum = 0.f;
    for (int s = 0; s < splits; ++s) {
        const float *part = parts + s * (head_dim + 2);
        const float weight = part[0] == __int_as_float(0xff800000) ? 0.f : expf(part[0] - maximum);
        total += weight * part[1];
        if (threadIdx.x < head_dim) sum += weight * part[2 + threadIdx.x];
    }
    if (sinks) total += expf(to_float(sinks[blockIdx.y]) - maximum);
    if (threadIdx.x < head_dim) out[row * head_dim + threadIdx.x] = to_bf16(sum / total);
}

// ---------------------------------------------------------------------------------------------
// Mixture of experts: routing, sorting assignments by expert, the grouped expert GEMMs, combine.

// One warp per token: scores in float32 (a softmax over the experts, or each one's sigmoid),
// the choice scores (plus `bias` when given) limited to the `selected_groups` best of `groups`
// groups (a group's score: its best choice score, or its two best summed; the others' scores
// become zero, as transformers masks them), top-k by repeated maximum (ties to the lower index),
// weights the picks' scores, optionally renormalised, times `scaling`. At most 32 groups.
// Grid: ceil(tokens / warpsPerBlock).
extern "C" __global__ void route_top_k(const bf16 *logits, const bf16 *bias, int *experts, float *weights, int tokens,
                                       int expert_count, int top_k, int renormalize, int sigmoid, int groups,
                                       int selected_groups, int group_top_two, float scaling) {
    __shared__ float scores[8][512];
    __shared__ float choice[8][512];
    __shared__ int kept_groups[8][32];
    const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
    const int t = blockIdx.x * (blockDim.x / 32) + warp;
    if (t >= tokens) return;
    const bf16 *row = logits + (long)t * expert_count;
    float *s = scores[warp], *c = choice[warp];
    if (sigmoid) {
        for (int e = lane; e < expert_count; e += 32) s[e] = 1.f / (1.f + expf(-to_float(row[e])));
    } else {
        float maximum = __int_as_float(0xff800000);
        for (int e = lane; e < expert_count; e += 32) maximum = fmaxf(maximum, to_float(row[e]));
        maximum = warp_max(maximum);
        float total = 0.f;
        for (int e = lane; e < expert_count; e += 32) { s[e] = expf(to_float(row[e]) - maximum); total += s[e]; }
        total = warp_sum(total);
        for (int e = lane; e < expert_count; e += 32) s[e] /= total;
    }
    for (int e = lane; e < expert_count; e += 32) c[e] = s[e] + (bias ? to_float(bias[e]) : 0.f);
    __syncwarp();
    if (groups > 1) {
        const int size = expert_count / groups;
        float group_score = __int_as_float(0xff800000);
        if (lane < groups) {
            float first = __int_as_float(0xff800000), second = __int_as_float(0xff800000);
            for (int i = 0; i < size; ++i) {
                const float v = c[lane * size + i];
                if (v > first) { second = first; first = v; } else if (v > second) { second = v; }
            }
            group_score = group_top_two ? first + second : first;
        }
        bool kept = false;
        for (int k = 0; k < selected_groups; ++k) {
            float best_value = kept ? __int_as_float(0xff800000) : group_score;
            int best = lane < groups && !kept ? lane : 32;
            for (int offset = 16; offset > 0; offset >>= 1) {
                const float other_value = __shfl_xor_sync(0xffffffffu, best_value, offset);
                const int other = __shfl_xor_sync(0xffffffffu, best, offset);
                if (other < 32 && (best == 32 || other_value > best_value || (other_value == best_value && other < best))) {
                    best_value = other_value;
                    best = other;
                }
            }
            if (lane == best) kept = true;
        }
        kept_groups[warp][lane] = kept ? 1 : 0;
        __syncwarp();
        for (int e = lane; e < expert_count; e += 32)
            if (!kept_groups[warp][e / size]) c[e] = 0.f;
        __syncwarp();
    }
    float picked = 0.f;
    for (int k = 0; k < top_k; ++k) {
        float best_value = __int_as_float(0xff800000);
        int best = expert_count;
        for (int e = lane; e < expert_count; e += 32)
            if (c[e] > best_value) { best_value = c[e]; best = e; }
        for (int offset = 16; offset > 0; offset >>= 1) {
            const float other_value = __shfl_xor_sync(0xffffffffu, best_value, offset);
            const int other = __shfl_xor_sync(0xffffffffu, best, offset);
            if (other_value > best_value || (other_value == best_value && other < best)) { best_value = other_value; best = other; }
        }
        const float weight = s[best];
        picked += weight;
        if (lane == 0) {
            experts[(long)t * top_k + k] = best;
            weights[(long)t * top_k + k] = weight;
            c[best] = __int_as_float(0xff800000);
        }
        __syncwarp();
    }
    if (lane < top_k) {
        float weight = weights[(long)t * top_k + lane];
        if (renormalize) weight /= picked + 1e-20f;
        weights[(long)t * top_k + lane] = weight * scaling;
    }
}

// A counting sort's second pass, in one block: where each bucket's rows start (offsets, and the
// cursors the third pass fills from), from the buckets' counts. Every thread returns with them set.
__device__ void bucket_offsets(const int *counts, int buckets, int *offsets, int *cursor) {
    if (threadIdx.x == 0) {
        int running = 0;
        for (int b = 0; b < buckets; ++b) { offsets[b] = running; cursor[b] = running; running += counts[b]; }
        offsets[buckets] = running;
    }
    __syncthreads();
}

// Sorts the step's assignments (token · topK + pick) by expert with a counting sort in one block:
// offsets[e] … offsets[e + 1] are expert e's rows of `sorted` (assignment ids), and
// positions[a] is assignment a's row (−1 when its pick is outside 0 ..< experts). The order within
// an expert depends on atomics, which changes nothing: every row is computed on its own.
// Shared memory: 2 · experts ints.
extern "C" __global__ void sort_assignments(const int *picks, int assignments, int expert_count, int *offsets,
                                            int *sorted, int *positions) {
    DYNAMIC_SHARED(int, counts);
    int *cursor = counts + expert_count;
    for (int e = threadIdx.x; e < expert_count; e += blockDim.x) counts[e] = 0;
    __syncthreads();
    for (int a = threadIdx.x; a < assignments; a += blockDim.x) {
        const int e = picks[a];
        if (e >= 0 && e < expert_count) atomicAdd(&counts[e], 1);
    }
    __syncthreads();
    bucket_offsets(counts, expert_count, offsets, cursor);
    for (int a = threadIdx.x; a < assignments; a += blockDim.x) {
        const int e = picks[a];
        if (e >= 0 && e < expert_count) {
            const int at = atomicAdd(&cursor[e], 1);
            sorted[at] = a;
            positions[a] = at;
        } else {
            positions[a] = -1;
        }
    }
}

// Grouped GEMM over experts on tensor cores (mma.m16n8k16, bf16 in, f32 accumulate):
// for expert e and its rows r (offsets[e] ≤ r < offsets[e + 1]), out[r, n] = A[r, :] · W[e, n, :].
//   gated (gate/up): A[r] = x[sorted[r] / top_k]; W = gate_up [E, 2·N, K]; the block computes the
//     gate columns n and the up columns N + n together and writes bf16(bf16(silu(gate)) · up).
//   plain (down): A[r] = activated[r]; W = down [E, N, K]; writes bf16.
// Tiles: 64 rows × 64 columns (× 2 when gated) × 64 of K, 4 stages of cp.async in dynamic shared
// memory (STAGES · (BM + B rows) · ROW · 2 bytes: CUDAKernels.expertSharedBytes): a decode step streams every
// expert's weights once, and 128-byte row segments with three tiles in flight keep HBM busy where
// 64-byte segments with two did not (1 TB/s measured). Eight warps (two blocks fit an SM), each
// owning 8 columns of every row group, so warps skip row groups past the expert's rows (a decode
// step has a handful of rows per expert). K must be a multiple of 8 (16-byte copies).
// Grid: (ceil(N / 64), experts, row-tile split); block: 32 · GEMM_WARPS.
#define GEMM_BM 64
#define GEMM_BN 64
#define GEMM_BK 64
#define GEMM_PAD 8
#define GEMM_STAGES 4
#define GEMM_ROW (GEMM_BK + GEMM_PAD)
#define GEMM_WARPS 8
#define GEMM_N_TILES (GEMM_BN / GEMM_WARPS / 8)

// An expert's activation of its gate and up sums at column n of N (ExpertActivation): SiLU,
// bf16(silu(bf16(gate))) · bf16(up), or GPT-OSS's clamped SwiGLU, (up + 1) · gate · σ(α · gate)
// with gate ≤ limit and |up| ≤ limit. `bias` (the expert's 2N values, gate then up) is added to the
// rounded sums first when given.
__device__ __forceinline__ float expert_activation(float gate, float up, const bf16 *bias, int n, int N, int clamped, float alpha,
                                                   float limit) {
    if (bias) {
        gate = round_bf16(gate) + to_float(bias[n]);
        up = round_bf16(up) + to_float(bias[N + n]);
    }
    gate = round_bf16(gate);
    up = round_bf16(up);
    if (!clamped) return round_bf16(gate / (1.f + expf(-gate))) * up;
    gate = fminf(gate, limit);
    up = fminf(fmaxf(up, -limit), limit);
    return (up + 1.f) * round_bf16(gate * round_bf16(1.f / (1.f + expf(-alpha * gate))));
}

// A down projection's value at column n plus the expert's bias (when given), as bf16(bf16(v) + b).
__device__ __forceinline__ float expert_output(float value, const bf16 *bias, int n) {
    return bias ? round_bf16(value) + to_float(bias[n]) : value;
}

// With `targets` (the peer exchange's down projection), row r goes to the rank its entry came
// from instead of out[r]: entry sorted[r] = source · per_source + assignment, written at row
// `assignment` of targets[source].
// `bias`: the experts' [E, 2N] (gated) or [E, N] biases, or null; `clamped`, `alpha`, `limit`: the activation's.
template <bool GATED>
__device__ void expert_gemm(const bf16 *input, const bf16 *weights, const int *offsets, const int *sorted, bf16 *out,
                            int top_k, int K, int N, const bf16 *bias, int clamped, float alpha, float limit,
                            const u64 *targets = nullptr, long per_source = 0) {
    constexpr int B_ROWS = GATED ? 2 * GEMM_BN : GEMM_BN;
    DYNAMIC_SHARED(bf16, gemm_shared);
    bf16 (*a_tile)[GEMM_BM][GEMM_ROW] = (bf16 (*)[GEMM_BM][GEMM_ROW])gemm_shared;
    bf16 (*b_tile)[B_ROWS][GEMM_ROW] = (bf16 (*)[B_ROWS][GEMM_ROW])(gemm_shared + GEMM_STAGES * GEMM_BM * GEMM_ROW);
    __shared__ long a_rows[GEMM_BM];
    const int expert = blockIdx.y, n0 = blockIdx.x * GEMM_BN;
    const int begin = offsets[expert], count = offsets[expert + 1] - begin;
    const int warp = threadIdx.x / 32, lane = threadIdx.x & 31, group = lane >> 2, pair = (lane & 3) * 2;
    const bf16 *expert_weights = weights + (long)expert * (GATED ? 2 * N : N) * K;
    const bf16 *expert_bias = bias ? bias + (long)expert * (GATED ? 2 * N : N) : nullptr;
    const int k_tiles = (K + GEMM_BK - 1) / GEMM_BK;
    for (int m0 = blockIdx.z * GEMM_BM; m0 < count; m0 += gridDim.z * GEMM_BM) {
        const int rows = min(GEMM_BM, count - m0);
        __syncthreads();
        for (int r = threadIdx.x; r < GEMM_BM; r += blockDim.x) {
            const int row = begin + m0 + min(r, rows - 1);
            a_rows[r] = GATED ? (long)(sorted[row] / top_k) : (long)row;
        }
        __syncthreads();
        auto load = [&](int stage, int k_tile) {
            const int k0 = k_tile * GEMM_BK;
            for (int chunk = threadIdx.x; chunk < GEMM_BM * (GEMM_BK / 8); chunk += blockDim.x) {
                const int r = chunk / (GEMM_BK / 8), k = k0 + (chunk % (GEMM_BK / 8)) * 8;
                // Rows past the expert's are left stale: their results are never written.
                if (r < rows) copy_16(&a_tile[stage][r][(chunk % (GEMM_BK / 8)) * 8], input + (k < K ? a_rows[r] * K + k : 0), k < K);
            }
            for (int chunk = threadIdx.x; chunk < B_ROWS * (GEMM_BK / 8); chunk += blockDim.x) {
                const int r = chunk / (GEMM_BK / 8), k = k0 + (chunk % (GEMM_BK / 8)) * 8;
                const int column = n0 + (r % GEMM_BN);
                const long weight_row = (GATED && r >= GEMM_BN) ? (long)N + column : column;
                const bool valid = column < N && k < K;
                copy_16(&b_tile[stage][r][(chunk % (GEMM_BK / 8)) * 8], expert_weights + (valid ? weight_row * K + k : 0), valid);
            }
        };
        float acc[GATED ? 2 : 1][4][GEMM_N_TILES][4];
        #pragma unroll
        for (int h = 0; h < (GATED ? 2 : 1); ++h)
            #pragma unroll
            for (int m = 0; m < 4; ++m)
                #pragma unroll
                for (int n = 0; n < GEMM_N_TILES; ++n)
                    #pragma unroll
                    for (int i = 0; i < 4; ++i) acc[h][m][n][i] = 0.f;
        const int row_groups = (rows + 15) / 16;
        #pragma unroll
        for (int s = 0; s < GEMM_STAGES - 1; ++s) {
            if (s < k_tiles) load(s, s);
            copy_commit();
        }
        for (int k_tile = 0; k_tile < k_tiles; ++k_tile) {
            copy_wait<GEMM_STAGES - 2>();
            __syncthreads();
            const int next = k_tile + GEMM_STAGES - 1;
            if (next < k_tiles) load(next % GEMM_STAGES, next);
            copy_commit();
            const int stage = k_tile % GEMM_STAGES;
            #pragma unroll
            for (int kk = 0; kk < GEMM_BK; kk += 16) {
                u32 b[GATED ? 2 : 1][GEMM_N_TILES][2];
                #pragma unroll
                for (int h = 0; h < (GATED ? 2 : 1); ++h)
                    #pragma unroll
                    for (int n = 0; n < GEMM_N_TILES; ++n) {
                        const bf16 *base = &b_tile[stage][h * GEMM_BN + warp * (GEMM_BN / GEMM_WARPS) + n * 8 + group][kk + pair];
                        b[h][n][0] = *(const u32 *)base;
                        b[h][n][1] = *(const u32 *)(base + 8);
                    }
                #pragma unroll
                for (int m = 0; m < 4; ++m) {
                    if (m >= row_groups) break;
                    u32 a[4];
                    const bf16 *top = &a_tile[stage][m * 16 + group][kk + pair];
                    const bf16 *bottom = &a_tile[stage][m * 16 + group + 8][kk + pair];
                    a[0] = *(const u32 *)top;
                    a[1] = *(const u32 *)bottom;
                    a[2] = *(const u32 *)(top + 8);
                    a[3] = *(const u32 *)(bottom + 8);
                    #pragma unroll
                    for (int h = 0; h < (GATED ? 2 : 1); ++h)
                        #pragma unroll
                        for (int n = 0; n < GEMM_N_TILES; ++n) mma_bf16(acc[h][m][n], a, b[h][n]);
                }
            }
        }
        copy_wait<0>();
        #pragma unroll
        for (int m = 0; m < 4; ++m) {
            #pragma unroll
            for (int n = 0; n < GEMM_N_TILES; ++n) {
                const int column = n0 + warp * (GEMM_BN / GEMM_WARPS) + n * 8 + pair;
                #pragma unroll
                for (int half = 0; half < 2; ++half) {
                    const int r = m * 16 + group + half * 8;
                    if (r >= rows) continue;
                    bf16 *target;
                    if (targets) {
                        const long entry = sorted[begin + m0 + r];
                        target = (bf16 *)targets[entry / per_source] + (entry % per_source) * N;
                    } else {
                        target = out + (long)(begin + m0 + r) * N;
                    }
                    #pragma unroll
                    for (int i = 0; i < 2; ++i) {
                        if (column + i >= N) continue;
                        float value = acc[0][m][n][half * 2 + i];
                        if (GATED) {
                            value = expert_activation(value, acc[GATED ? 1 : 0][m][n][half * 2 + i], expert_bias, column + i, N,
                                                      clamped, alpha, limit);
                        } else {
                            value = expert_output(value, expert_bias, column + i);
                        }
                        target[column + i] = to_bf16(value);
                    }
                }
            }
        }
    }
}

extern "C" __global__ void __launch_bounds__(256) expert_gate_up(const bf16 *x, const bf16 *gate_up, const int *offsets,
                                                                 const int *sorted, bf16 *activated, int top_k, int hidden,
                                                                 int intermediate, const bf16 *bias, int clamped, float alpha,
                                                                 float limit) {
    expert_gemm<true>(x, gate_up, offsets, sorted, activated, top_k, hidden, intermediate, bias, clamped, alpha, limit);
}

extern "C" __global__ void __launch_bounds__(256) expert_down(const bf16 *activated, const bf16 *down, const int *offsets,
                                                              bf16 *rows, int intermediate, int hidden, const bf16 *bias) {
    expert_gemm<false>(activated, down, offsets, nullptr, rows, 1, intermediate, hidden, bias, 0, 0.f, 0.f);
}

// The experts of a step with a few rows each (decode at small batches) as matrix-vector
// products, in assignment order: assignment a = t · top_k + k runs token t's row through expert
// picks[a], so nothing is sorted (a sort is a launch of its own, and a binary search over the
// expert offsets is seven dependent loads before a block's first weight load). The grid's x runs
// over assignments (or tokens), so the blocks that run together read the same columns: two
// assignments of one expert read its rows at about the same time, the second mostly from L2
// (expert-major order re-read them from HBM: batch-8 decode 13.3 → 14.8 ms). Each warp owns
// GEMV_COLUMNS output columns, streams their weight rows with 16-byte loads against the input row,
// then sums over the warp. Every SM gets blocks, where the grouped GEMM's 64-row tiles leave most
// SMs idle and most of each tile empty when an expert has one row. Same operands and rounding as
// expert_gemm then combine. Picks outside 0..<expert_count (rows other ranks compute) contribute nothing.
// K must be a multiple of 8.
#define GEMV_COLUMNS 4

__device__ __forceinline__ float dot8(uint4 w, const float *x) {
    const u32 words[4] = {w.x, w.y, w.z, w.w};
    float sum = 0.f;
    #pragma unroll
    for (int i = 0; i < 4; ++i) {
        sum += __uint_as_float(words[i] << 16) * x[2 * i];
        sum += __uint_as_float(words[i] & 0xffff0000u) * x[2 * i + 1];
    }
    return sum;
}

// The warp's GEMV_COLUMNS values of columns n0… of `in` · `w`ᵀ (gated: w holds N gate rows then N
// up rows, and the value is expert_activation's; plain: expert_output's), unrounded, in every lane.
// `bias` is the expert's, or null.
template <bool GATED>
__device__ void gemv_columns(const bf16 *in, const bf16 *w, int K, int N, int n0, int lane, float *values, const bf16 *bias,
                             int clamped, float alpha, float limit) {
    float acc[GATED ? 2 : 1][GEMV_COLUMNS];
    #pragma unroll
    for (int h = 0; h < (GATED ? 2 : 1); ++h)
        #pragma unroll
        for (int c = 0; c < GEMV_COLUMNS; ++c) acc[h][c] = 0.f;
    #pragma unroll 2
    for (int k = lane * 8; k < K; k += 32 * 8) {
        const uint4 x8 = *(const uint4 *)(in + k);
        const float xs[8] = {__uint_as_float(x8.x << 16), __uint_as_float(x8.x & 0xffff0000u),
                             __uint_as_float(x8.y << 16), __uint_as_float(x8.y & 0xffff0000u),
                             __uint_as_float(x8.z << 16), __uint_as_float(x8.z & 0xffff0000u),
                             __uint_as_float(x8.w << 16), __uint_as_float(x8.w & 0xffff0000u)};
        #pragma unroll
        for (int h = 0; h < (GATED ? 2 : 1); ++h)
            #pragma unroll
            for (int c = 0; c < GEMV_COLUMNS; ++c) {
                const long row = (long)h * N + min(n0 + c, N - 1);
                acc[h][c] += dot8(*(const uint4 *)(w + row * K + k), xs);
            }
    }
    #pragma unroll
    for (int c = 0; c < GEMV_COLUMNS; ++c) {
        float value = warp_sum(acc[0][c]);
        const int n = min(n0 + c, N - 1);
        if (GATED) {
            value = expert_activation(value, warp_sum(acc[GATED ? 1 : 0][c]), bias, n, N, clamped, alpha, limit);
        } else {
            value = expert_output(value, bias, n);
        }
        values[c] = value;
    }
}

// activated[a, n] = bf16(silu(x[t] · gate[e, n]) · (x[t] · up[e, n])) for e = picks[a], t = a / top_k.
// Grid: (assignments, ceil(N / (GEMV_COLUMNS · warps))); block: 32 · warps.
extern "C" __global__ void __launch_bounds__(256) expert_gemv_gate_up(const bf16 *x, const bf16 *gate_up, const int *picks,
                                                                      bf16 *activated, int expert_count, int top_k,
                                                                      int hidden, int intermediate, const bf16 *bias,
                                                                      int clamped, float alpha, float limit) {
    const long a = blockIdx.x;
    const int e = picks[a];
    if (e < 0 || e >= expert_count) return;
    const int lane = threadIdx.x & 31;
    const int n0 = (blockIdx.y * (blockDim.x / 32) + threadIdx.x / 32) * GEMV_COLUMNS;
    if (n0 >= intermediate) return;
    float values[GEMV_COLUMNS];
    gemv_columns<true>(x + (a / top_k) * hidden, gate_up + (long)e * 2 * intermediate * hidden, hidden, intermediate,
                       n0, lane, values, bias ? bias + (long)e * 2 * intermediate : nullptr, clamped, alpha, limit);
    #pragma unroll
    for (int c = 0; c < GEMV_COLUMNS; ++c)
        if (lane == 0 && n0 + c < intermediate) activated[a * intermediate + n0 + c] = to_bf16(values[c]);
}

// out[t, n] = bf16(Σ_k weights[t, k] · bf16(activated[a] · down[e, n])) over a = t · top_k + k in
// pick order, e = picks[a]: the down projection and the combine in one launch. Warp k computes
// assignment k's columns, the block's first threads sum them in pick order (combine's order).
// Grid: (tokens, ceil(N / GEMV_COLUMNS)); block: 32 · top_k (top_k ≤ 32).
extern "C" __global__ void __launch_bounds__(1024) expert_gemv_down_combine(const bf16 *activated, const bf16 *down,
                                                                           const int *picks, const float *weights,
                                                                           bf16 *out, int expert_count, int top_k,
                                                                           int intermediate, int hidden, const bf16 *bias) {
    __shared__ float rows[32][GEMV_COLUMNS];
    const long t = blockIdx.x;
    const int k = threadIdx.x / 32, lane = threadIdx.x & 31;
    const int n0 = blockIdx.y * GEMV_COLUMNS;
    const long a = t * top_k + k;
    const int e = picks[a];
    if (e >= 0 && e < expert_count) {
        float values[GEMV_COLUMNS];
        gemv_columns<false>(activated + a * intermediate, down + (long)e * hidden * intermediate, intermediate, hidden,
                            n0, lane, values, bias ? bias + (long)e * hidden : nullptr, 0, 0.f, 0.f);
        #pragma unroll
        for (int c = 0; c < GEMV_COLUMNS; ++c)
            if (lane == c) rows[k][c] = round_bf16(values[c]);
    }
    __syncthreads();
    const int c = threadIdx.x;
    if (c < GEMV_COLUMNS && n0 + c < hidden) {
        float sum = 0.f;
        for (int j = 0; j < top_k; ++j) {
            const int pick = picks[t * top_k + j];
            if (pick >= 0 && pick < expert_count) sum += weights[t * top_k + j] * rows[j][c];
        }
        out[t * hidden + n0 + c] = to_bf16(sum);
    }
}

// Dense projections of a few rows (decode at small batches), out[t, n] = x[t] · w[n] (+ bias[n]),
// where cuBLAS's kernels for a handful of rows reach about half the copy bandwidth: each weight row
// is read once for all `tokens` ≤ T rows. At 8 rows the FMAs and conversions per weight byte make
// it slower than cuBLAS's tensor cores (batch-8 decode 13.3 → 14.2 ms on an H100), so T ≤ 4.
// Up to three projections of the same rows share the launch (attention's q, k and v): the blocks
// walk the columns of the first, then the second, then the third (N1 = N2 = 0 for one). A block
// owns GEMV_COLUMNS columns (every N a multiple of it when there are several) and its LINEAR_WARPS
// warps split K (warp w takes the 256-wide chunks w, w + LINEAR_WARPS, …), so that a projection
// with few columns (a router, k and v) still spreads over the SMs; the partial sums meet in shared
// memory in warp order. Rounding as matmul then add_bias: bf16(bf16(x · w) + bias), or float32 out
// (logits). Grid: ceil((N0 + N1 + N2) / GEMV_COLUMNS); block: 32 · LINEAR_WARPS. K must be a
// multiple of 8.
#define LINEAR_WARPS 4

template <int T>
__device__ void linear_rows(const bf16 *x, const bf16 *w0, const bf16 *w1, const bf16 *w2, const bf16 *b0,
                            const bf16 *b1, const bf16 *b2, void *out0, bf16 *out1, bf16 *out2, int N0, int N1, int N2,
                            int out_f32, int tokens, int K) {
    __shared__ float partial[LINEAR_WARPS][T][GEMV_COLUMNS];
    const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
    int n0 = blockIdx.x * GEMV_COLUMNS, N = N0;
    const bf16 *w = w0, *bias = b0;
    void *out = out0;
    if (n0 >= N0 + N1) { n0 -= N0 + N1; N = N2; w = w2; bias = b2; out = out2; out_f32 = 0; }
    else if (n0 >= N0) { n0 -= N0; N = N1; w = w1; bias = b1; out = out1; out_f32 = 0; }
    float acc[T][GEMV_COLUMNS];
    #pragma unroll
    for (int t = 0; t < T; ++t)
        #pragma unroll
        for (int c = 0; c < GEMV_COLUMNS; ++c) acc[t][c] = 0.f;
    #pragma unroll 2
    for (int k = (warp * 32 + lane) * 8; k < K; k += LINEAR_WARPS * 256) {
        uint4 w8[GEMV_COLUMNS];
        #pragma unroll
        for (int c = 0; c < GEMV_COLUMNS; ++c) w8[c] = *(const uint4 *)(w + (long)min(n0 + c, N - 1) * K + k);
        #pragma unroll
        for (int t = 0; t < T; ++t) {
            if (t >= tokens) break;
            const uint4 x8 = *(const uint4 *)(x + (long)t * K + k);
            const float xs[8] = {__uint_as_float(x8.x << 16), __uint_as_float(x8.x & 0xffff0000u),
                                 __uint_as_float(x8.y << 16), __uint_as_float(x8.y & 0xffff0000u),
                                 __uint_as_float(x8.z << 16), __uint_as_float(x8.z & 0xffff0000u),
                                 __uint_as_float(x8.w << 16), __uint_as_float(x8.w & 0xffff0000u)};
            #pragma unroll
            for (int c = 0; c < GEMV_COLUMNS; ++c) acc[t][c] += dot8(w8[c], xs);
        }
    }
    #pragma unroll
    for (int t = 0; t < T; ++t) {
        if (t >= tokens) break;
        #pragma unroll
        for (int c = 0; c < GEMV_COLUMNS; ++c) {
            const float v = warp_sum(acc[t][c]);
            if (lane == 0) partial[warp][t][c] = v;
        }
    }
    __syncthreads();
    const int t = threadIdx.x / GEMV_COLUMNS, c = threadIdx.x % GEMV_COLUMNS;
    if (t >= tokens || t >= T || n0 + c >= N) return;
    float value = 0.f;
    #pragma unroll
    for (int i = 0; i < LINEAR_WARPS; ++i) value += partial[i][t][c];
    const long at = (long)t * N + n0 + c;
    if (out_f32) ((float *)out)[at] = value;
    else ((bf16 *)out)[at] = bias ? to_bf16(round_bf16(value) + to_float(bias[n0 + c])) : to_bf16(value);
}

#define LINEAR_ROWS(T)                                                                                            \
    extern "C" __global__ void __launch_bounds__(32 * LINEAR_WARPS) linear_rows_##T(                              \
        const bf16 *x, const bf16 *w0, const bf16 *w1, const bf16 *w2, const bf16 *b0, const bf16 *b1,           \
        const bf16 *b2, void *out0, bf16 *out1, bf16 *out2, int N0, int N1, int N2, int out_f32, int tokens,      \
        int K) {                                                                                                  \
        linear_rows<T>(x, w0, w1, w2, b0, b1, b2, out0, out1, out2, N0, N1, N2, out_f32, tokens, K);              \
    }
LINEAR_ROWS(1)
LINEAR_ROWS(2)
LINEAR_ROWS(4)

// out[t, :] = bf16(Σ_k weights[t, k] · rows[position(t·topK + k), :]), in pick order, where
// position is `positions[…]` (expert-sorted rows; −1 contributes nothing) or the identity when
// `positions` is null (rows already in assignment order, as expert parallelism returns them).
extern "C" __global__ void combine(const bf16 *rows, const int *positions, const float *weights, bf16 *out, int top_k,
                                   int hidden) {
    const long t = blockIdx.x;
    for (int i = threadIdx.x; i < hidden; i += blockDim.x) {
        float sum = 0.f;
        for (int k = 0; k < top_k; ++k) {
            const long a = t * top_k + k;
            const long row = positions ? positions[a] : a;
            if (row >= 0) sum += weights[a] * to_float(rows[row * hidden + i]);
        }
        out[t * hidden + i] = to_bf16(sum);
    }
}

// ---------------------------------------------------------------------------------------------
// Expert parallelism through peer memory (PeerMemoryExchange.swift): every rank has one region
// that every rank of the group maps (CUDA IPC), laid out as
//   [0, 512)            dispatch flags, one u64 per source rank
//   [512, 1024)         combine flags, one u64 per destination rank
//   [1024, 1280)        token counts, one int per source rank
//   [1280, 1288)        poison: set by a rank that gave up waiting, so that every rank fails the step
//   slots_offset        int [ranks][capacity][top_k]: per source token and pick, the local slot or −1
//   rows_offset         bf16 [ranks][capacity][hidden]: the source's token rows this rank runs
//   returned_offset     bf16 [capacity · top_k][hidden]: this rank's own assignments' results
// `peers[d]` is rank d's region as mapped here (this rank's own included). A layer is: dispatch
// (whose last block raises the dispatch flags; a rank with no tokens launches ep_signal instead),
// sort the received entries by slot (after waiting for every rank's dispatch flag), the gate/up
// and down projections (the down projection writes each result into its source's `returned`),
// signal (combine flags), wait, combine. The projections run as matrix-vector kernels when a rank
// received at most `gemv_limit` entries (decode at small batches) and as the grouped GEMMs
// otherwise; both kinds are launched, and each reads the count on the device and returns at once
// when it is the other's, so that no host read decides. Only one-block kernels wait: a kernel of
// many blocks that spin could hold every SM of a GPU the ranks share, and the peer it waits for
// could never run. Flags carry a per-rank epoch that every layer advances by one on every rank
// alike (ranks step in lockstep), so no flag is ever reset and graphs replay the whole layer.
#define EP_DISPATCH_FLAGS 0
#define EP_COMBINE_FLAGS 512
#define EP_COUNTS 1024
#define EP_POISON 1280

// Whether this block is the last of its grid to get here; block-uniform. Every block calls it
// once, after its writes: the barrier and thread 0's system-wide fence put every thread's writes
// before the ticket, and the last block resets the ticket for the next launch.
__device__ bool last_block(int *ticket) {
    __shared__ int last;
    __syncthreads();
    if (threadIdx.x == 0) {
        __threadfence_system();
        last = atomicAdd(ticket, 1) == (int)(gridDim.x * gridDim.y * gridDim.z) - 1;
        if (last) {
            *ticket = 0;
            __threadfence_system();
        }
    }
    __syncthreads();
    return last != 0;
}

// Tells every rank d that this rank's writes to it are done: advances the epoch first when
// `advance` (a layer's dispatch), writes `count` to d's counts (unless −1), then this rank's flag
// at flags_offset of d's region, after a system-wide fence. Called by every thread of one block.
__device__ void signal_peers(u64 *epoch, int advance, const u64 *peers, int rank, int ranks, long flags_offset, int count) {
    __shared__ u64 value;
    if (threadIdx.x == 0) {
        value = epoch[0] + (advance ? 1 : 0);
        epoch[0] = value;
    }
    __syncthreads();
    for (int d = threadIdx.x; d < ranks; d += blockDim.x) {
        if (count >= 0) ((int *)(peers[d] + EP_COUNTS))[rank] = count;
        __threadfence_system();
        store_release_system((u64 *)(peers[d] + flags_offset) + rank, value);
    }
}

// Waits until every rank's flag in `flags` (this rank's region) reaches the epoch. Past
// timeout_ns it records which rank it gave up on (failure = rank + 1) and poisons every rank's
// region; a rank that finds itself poisoned, or already failed, waits no more. So a dead peer
// costs the step its results (every rank's, each then failing the step), not the GPU for every
// layer's timeout. Called by every thread of the block, which returns once the wait is over.
__device__ void wait_for_peers(const u64 *epoch, const u64 *flags, const u64 *poison, int ranks, u64 timeout_ns,
                               int *failure, const u64 *peers) {
    for (int s = threadIdx.x; s < ranks; s += blockDim.x) {
        const u64 target = epoch[0], started = global_nanoseconds();
        // A poisoned rank fails its step even where its own peers' flags are all in.
        if (((volatile int *)failure)[0] == 0 && load_acquire_system(poison) != 0) ((volatile int *)failure)[0] = -1;
        while (load_acquire_system(flags + s) < target) {
            if (((volatile int *)failure)[0] != 0) break;
            if (load_acquire_system(poison) != 0) {
                ((volatile int *)failure)[0] = -1;
                break;
            }
            if (global_nanoseconds() - started > timeout_ns) {
                ((volatile int *)failure)[0] = s + 1;
                for (int d = 0; d < ranks; ++d) store_release_system((u64 *)(peers[d] + EP_POISON), 1ull);
                break;
            }
            spin_pause();
        }
    }
    __threadfence();
    __syncthreads();
}

// Grid: tokens; block: 128. Picks go to slots by the layer's replica table (row e: the replica
// count, then the slots; a token takes replica position % count), each slot's counter counts the
// pick unless the token is padding (its KV slot is padding_slot), every rank gets the token's
// slot list, and its row goes once to each rank that runs one of its picks. The last block
// advances the epoch and raises this rank's dispatch flag at every rank.
extern "C" __global__ void ep_dispatch(const bf16 *x, const int *picks, const int *positions, const int *kv_slots,
                                       int padding_slot, const int *replicas, int max_replicas, u64 *counters,
                                       const u64 *peers, int rank, int ranks, int slots_per_rank, int top_k, int hidden,
                                       int capacity, long slots_offset, long rows_offset, u64 *epoch, int *ticket) {
    __shared__ int destinations[32];
    __shared__ int locals[32];
    const long t = blockIdx.x;
    if (threadIdx.x < top_k) {
        const int expert = picks[t * top_k + threadIdx.x];
        const int *row = replicas + (long)expert * (max_replicas + 1);
        const int slot = row[1 + positions[t] % row[0]];
        if (kv_slots[t] != padding_slot) atomicAdd(&counters[slot], 1ull);
        destinations[threadIdx.x] = slot / slots_per_rank;
        locals[threadIdx.x] = slot % slots_per_rank;
    }
    __syncthreads();
    for (int i = threadIdx.x; i < ranks * top_k; i += blockDim.x) {
        const int d = i / top_k, k = i % top_k;
        int *slots = (int *)(peers[d] + slots_offset) + ((long)rank * capacity + t) * top_k;
        slots[k] = destinations[k] == d ? locals[k] : -1;
    }
    for (int d = 0; d < ranks; ++d) {
        bool needed = false;
        for (int k = 0; k < top_k; ++k) needed = needed || destinations[k] == d;
        if (!needed) continue;
        bf16 *target = (bf16 *)(peers[d] + rows_offset) + ((long)rank * capacity + t) * hidden;
        for (int i = threadIdx.x * 8; i < hidden; i += blockDim.x * 8) *(uint4 *)(target + i) = *(const uint4 *)(x + t * hidden + i);
    }
    __threadfence_system();
    if (last_block(ticket)) signal_peers(epoch, 1, peers, rank, ranks, EP_DISPATCH_FLAGS, (int)gridDim.x);
}

// Grid: 1; block: 64. signal_peers on its own: the dispatch of a rank with no tokens (count 0),
// and the combine flags once the down projection is done.
extern "C" __global__ void ep_signal(u64 *epoch, int advance, const u64 *peers, int rank, int ranks, long flags_offset,
                                     int count) {
    signal_peers(epoch, advance, peers, rank, ranks, flags_offset, count);
}

// Grid: 1; block: 64. wait_for_peers on its own: the combine wait (which a rank with no tokens
// needs too: every rank must be done with this layer's rows before it sends the next's). The
// emulator runs the kernels that wait outside its launch lock, so that ranks on threads of one
// process can meet.
extern "C" __global__ void ep_wait(const u64 *epoch, const u64 *flags, const u64 *poison, int ranks, u64 timeout_ns,
                                   int *failure, const u64 *peers) {
    wait_for_peers(epoch, flags, poison, ranks, timeout_ns, failure, peers);
}

// Once every rank's dispatch flag is in: sort_assignments over what the ranks sent here, entries
// s · capacity · top_k + t · top_k + k for the counts[s] tokens of each source s, bucketed by their
// local slot (−1: not for this rank). Grid: 1; block: 1024; shared memory: 2 · slot_count ints.
extern "C" __global__ void ep_sort_received(const int *counts, const int *slots, int ranks, int capacity, int top_k,
                                            int slot_count, int *offsets, int *sorted, const u64 *epoch,
                                            const u64 *flags, const u64 *poison, u64 timeout_ns, int *failure,
                                            const u64 *peers) {
    wait_for_peers(epoch, flags, poison, ranks, timeout_ns, failure, peers);
    DYNAMIC_SHARED(int, per_slot);
    int *cursor = per_slot + slot_count;
    for (int e = threadIdx.x; e < slot_count; e += blockDim.x) per_slot[e] = 0;
    __syncthreads();
    for (int s = 0; s < ranks; ++s) {
        const long base = (long)s * capacity * top_k;
        const int entries = min(max(counts[s], 0), capacity) * top_k;
        for (int a = threadIdx.x; a < entries; a += blockDim.x) {
            const int e = slots[base + a];
            if (e >= 0 && e < slot_count) atomicAdd(&per_slot[e], 1);
        }
    }
    __syncthreads();
    bucket_offsets(per_slot, slot_count, offsets, cursor);
    for (int s = 0; s < ranks; ++s) {
        const long base = (long)s * capacity * top_k;
        const int entries = min(max(counts[s], 0), capacity) * top_k;
        for (int a = threadIdx.x; a < entries; a += blockDim.x) {
            const int e = slots[base + a];
            if (e >= 0 && e < slot_count) sorted[atomicAdd(&cursor[e], 1)] = (int)(base + a);
        }
    }
}

// expert_gate_up over the received rows, unless at most gemv_limit entries came (ep_gemv_gate_up's).
extern "C" __global__ void __launch_bounds__(256) ep_expert_gate_up(const bf16 *rows, const bf16 *gate_up, const int *offsets,
                                                                    const int *sorted, bf16 *activated, int top_k,
                                                                    int hidden, int intermediate, int slot_count,
                                                                    int gemv_limit, const bf16 *bias, int clamped, float alpha,
                                                                    float limit) {
    if (offsets[slot_count] <= gemv_limit) return;
    expert_gemm<true>(rows, gate_up, offsets, sorted, activated, top_k, hidden, intermediate, bias, clamped, alpha, limit);
}

// expert_down whose rows go back to the ranks they came from: targets[s] is rank s's `returned`
// as mapped here, per_source = capacity · top_k. Unless at most gemv_limit entries came (ep_gemv_down's).
extern "C" __global__ void __launch_bounds__(256) ep_expert_down(const bf16 *activated, const bf16 *down, const int *offsets,
                                                                 const int *sorted, const u64 *targets, long per_source,
                                                                 int intermediate, int hidden, int slot_count, int gemv_limit,
                                                                 const bf16 *bias) {
    if (offsets[slot_count] <= gemv_limit) return;
    expert_gemm<false>(activated, down, offsets, sorted, nullptr, 1, intermediate, hidden, bias, 0, 0.f, 0.f, targets, per_source);
    __threadfence_system();
}

// The received entries' gate/up projections as matrix-vector products (expert_gemv_gate_up's),
// when at most gemv_limit came: block x takes the sorted entries x, x + gridDim.x, …, and
// activated[r] is sorted entry r's, as expert_gemm writes it. Grid: (entry stride,
// ceil(N / (GEMV_COLUMNS · warps))); block: 32 · warps.
extern "C" __global__ void __launch_bounds__(256) ep_gemv_gate_up(const bf16 *rows, const bf16 *gate_up, const int *offsets,
                                                                  const int *sorted, const int *slots, bf16 *activated,
                                                                  int top_k, int hidden, int intermediate, int slot_count,
                                                                  int gemv_limit, const bf16 *bias, int clamped, float alpha,
                                                                  float limit) {
    const int total = offsets[slot_count];
    if (total > gemv_limit) return;
    const int lane = threadIdx.x & 31;
    const int n0 = (blockIdx.y * (blockDim.x / 32) + threadIdx.x / 32) * GEMV_COLUMNS;
    if (n0 >= intermediate) return;
    for (int r = blockIdx.x; r < total; r += gridDim.x) {
        const long entry = sorted[r];
        float values[GEMV_COLUMNS];
        gemv_columns<true>(rows + (entry / top_k) * hidden, gate_up + (long)slots[entry] * 2 * intermediate * hidden, hidden,
                           intermediate, n0, lane, values, bias ? bias + (long)slots[entry] * 2 * intermediate : nullptr, clamped,
                           alpha, limit);
        #pragma unroll
        for (int c = 0; c < GEMV_COLUMNS; ++c)
            if (lane == 0 && n0 + c < intermediate) activated[(long)r * intermediate + n0 + c] = to_bf16(values[c]);
    }
}

// ep_expert_down as matrix-vector products, when at most gemv_limit entries came (same grid as
// ep_gemv_gate_up's over N = hidden).
extern "C" __global__ void __launch_bounds__(256) ep_gemv_down(const bf16 *activated, const bf16 *down, const int *offsets,
                                                               const int *sorted, const int *slots, const u64 *targets,
                                                               long per_source, int intermediate, int hidden, int slot_count,
                                                               int gemv_limit, const bf16 *bias) {
    const int total = offsets[slot_count];
    if (total > gemv_limit) return;
    const int lane = threadIdx.x & 31;
    const int n0 = (blockIdx.y * (blockDim.x / 32) + threadIdx.x / 32) * GEMV_COLUMNS;
    if (n0 >= hidden) return;
    for (int r = blockIdx.x; r < total; r += gridDim.x) {
        const long entry = sorted[r];
        float values[GEMV_COLUMNS];
        gemv_columns<false>(activated + (long)r * intermediate, down + (long)slots[entry] * hidden * intermediate,
                            intermediate, hidden, n0, lane, values, bias ? bias + (long)slots[entry] * hidden : nullptr, 0, 0.f, 0.f);
        bf16 *target = (bf16 *)targets[entry / per_source] + (entry % per_source) * hidden;
        #pragma unroll
        for (int c = 0; c < GEMV_COLUMNS; ++c)
            if (lane == 0 && n0 + c < hidden) target[n0 + c] = to_bf16(values[c]);
    }
    __threadfence_system();
}

// ---------------------------------------------------------------------------------------------
// Sampling: one block per row of float32 logits. Greedy rows (temperature 0) take the argmax;
// the others the argmax of logits / temperature + Gumbel noise, which draws from the softmax.
// The noise of token i is a pure function of the row's key and i (GumbelSampling.swift does the
// same on the host). Ties go to the lower id.
extern "C" __global__ void sample_tokens(const float *logits, const float *temperatures, const u64 *keys, int *tokens,
                                         int vocabulary) {
    __shared__ float best_values[32];
    __shared__ int best_ids[32];
    const long row = blockIdx.x;
    const float temperature = temperatures[row];
    const u64 key = keys[row];
    const float *values = logits + row * vocabulary;
    float best_value = __int_as_float(0xff800000);
    int best = vocabulary;
    for (int i = threadIdx.x; i < vocabulary; i += blockDim.x) {
        float v = values[i];
        if (temperature > 0.f) {
            const u64 bits = splitmix(key + (u64)(i + 1) * 0x9e3779b97f4a7c15ull);
            const float unit = ((float)(bits >> 40) + 0.5f) * (1.f / 16777216.f);
            v = v / temperature - logf(-logf(unit));
        }
        if (v > best_value) { best_value = v; best = i; }
    }
    for (int offset = 16; offset > 0; offset >>= 1) {
        const float other_value = __shfl_xor_sync(0xffffffffu, best_value, offset);
        const int other = __shfl_xor_sync(0xffffffffu, best, offset);
        if (other_value > best_value || (other_value == best_value && other < best)) { best_value = other_value; best = other; }
    }
    const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
    if (lane == 0) { best_values[warp] = best_value; best_ids[warp] = best; }
    __syncthreads();
    if (warp == 0) {
        best_value = lane < (int)(blockDim.x / 32) ? best_values[lane] : __int_as_float(0xff800000);
        best = lane < (int)(blockDim.x / 32) ? best_ids[lane] : vocabulary;
        for (int offset = 16; offset > 0; offset >>= 1) {
            const float other_value = __shfl_xor_sync(0xffffffffu, best_value, offset);
            const int other = __shfl_xor_sync(0xffffffffu, best, offset);
            if (other_value > best_value || (other_value == best_value && other < best)) { best_value = other_value; best = other; }
        }
        if (lane == 0) tokens[row] = best < vocabulary ? best : 0;
    }
}
