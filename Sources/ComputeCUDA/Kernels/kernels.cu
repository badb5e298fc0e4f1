// Flexpert's CUDA kernels, compiled by NVRTC at start-up (NVRTCCompiler) for the device's sm_XY.
// Activations and the KV cache are float32; weights are float32 or bf16 (stored as raw 16-bit
// words), always accumulated in float32. Each weight-reading kernel exists in both forms,
// suffixed _f32 and _bf16; the backend picks one by the weight tensor's dtype.
// Every kernel mirrors a CPUBackend operator; BackendParityTests compare them.

typedef unsigned short bf16_t;

__device__ __forceinline__ float load_weight(const float *w, long i) { return w[i]; }
__device__ __forceinline__ float load_weight(const bf16_t *w, long i) { return __uint_as_float(((unsigned)w[i]) << 16); }

__device__ __forceinline__ float warp_sum(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
    return v;
}

// out[t, :] = table[ids[t], :]
template <typename W>
__device__ void embedding(const int *ids, const W *table, float *out, int width) {
    int t = blockIdx.x;
    long row = (long)ids[t] * width;
    for (int i = threadIdx.x; i < width; i += blockDim.x) out[(long)t * width + i] = load_weight(table, row + i);
}

// out[t, n] = dot(x[t, :], w[n, :]) + bias[n]. One warp per output column n and up to 8 tokens,
// so each weight row is read once for 8 tokens. Grid: (ceil(n / warpsPerBlock), ceil(t / 8)).
template <typename W>
__device__ void matmul(const float *x, const W *w, const W *bias, float *out, int tokens, int inner, int outputs) {
    const int lane = threadIdx.x & 31;
    const int column = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    const int first = blockIdx.y * 8;
    if (column >= outputs) return;
    const int count = min(8, tokens - first);
    float sums[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    const W *row = w + (long)column * inner;
    for (int k = lane; k < inner; k += 32) {
        float weight = load_weight(row, k);
        #pragma unroll
        for (int j = 0; j < 8; ++j) if (j < count) sums[j] += weight * x[(long)(first + j) * inner + k];
    }
    float b = bias ? load_weight(bias, column) : 0.f;
    #pragma unroll
    for (int j = 0; j < 8; ++j) {
        float s = warp_sum(sums[j]);
        if (j < count && lane == 0) out[(long)(first + j) * outputs + column] = s + b;
    }
}

// One block per row of `width` values (rows = elements / width).
template <typename W>
__device__ void rms_norm(const float *x, const W *weight, float *out, int width, float epsilon) {
    __shared__ float partial[32];
    long base = (long)blockIdx.x * width;
    float sum = 0.f;
    for (int i = threadIdx.x; i < width; i += blockDim.x) { float v = x[base + i]; sum += v * v; }
    sum = warp_sum(sum);
    if ((threadIdx.x & 31) == 0) partial[threadIdx.x / 32] = sum;
    __syncthreads();
    if (threadIdx.x < 32) {
        float v = threadIdx.x < blockDim.x / 32 ? partial[threadIdx.x] : 0.f;
        v = warp_sum(v);
        if (threadIdx.x == 0) partial[0] = v;
    }
    __syncthreads();
    float scale = rsqrtf(partial[0] / width + epsilon);
    for (int i = threadIdx.x; i < width; i += blockDim.x) out[base + i] = load_weight(weight, i) * (x[base + i] * scale);
}

#define WEIGHT_VARIANTS(W, SUFFIX) \
extern "C" __global__ void embedding_##SUFFIX(const int *ids, const W *table, float *out, int width) { embedding(ids, table, out, width); } \
extern "C" __global__ void matmul_##SUFFIX(const float *x, const W *w, const W *bias, float *out, int tokens, int inner, int outputs) { \
    matmul(x, w, bias, out, tokens, inner, outputs); } \
extern "C" __global__ void rms_norm_##SUFFIX(const float *x, const W *weight, float *out, int width, float epsilon) { \
    rms_norm(x, weight, out, width, epsilon); } \
extern "C" __global__ void expert_up_##SUFFIX(const float *x, const W *gate_up, const int *picks, float *out, int top_k, int hidden, int rows) { \
    expert_rows(x, gate_up, picks, out, top_k, hidden, rows, 1); } \
extern "C" __global__ void expert_down_##SUFFIX(const float *activated, const W *down, const int *picks, float *out, int hidden, int intermediate) { \
    expert_rows(activated, down, picks, out, 1, intermediate, hidden, 0); }

// Rows of one expert's weight against one assignment (token·topK + pick). One warp per (assignment,
// output row). With `by_token`, the input row is the assignment's token; otherwise the assignment's own.
// Grid: (ceil(rows / warpsPerBlock), assignments).
template <typename W>
__device__ void expert_rows(const float *input, const W *weights, const int *picks, float *out, int top_k, int inner, int rows, int by_token) {
    const int lane = threadIdx.x & 31;
    const int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    const int assignment = blockIdx.y;
    if (row >= rows) return;
    const long expert = picks[assignment];
    const float *source = input + (long)(by_token ? assignment / top_k : assignment) * inner;
    const W *weight = weights + (expert * rows + row) * (long)inner;
    float sum = 0.f;
    for (int k = lane; k < inner; k += 32) sum += load_weight(weight, k) * source[k];
    sum = warp_sum(sum);
    if (lane == 0) out[(long)assignment * rows + row] = sum;
}

WEIGHT_VARIANTS(float, f32)
WEIGHT_VARIANTS(bf16_t, bf16)

// Rotate pairs (i, i + half) of each head in place. Grid: tokens; block: threads over heads·half.
extern "C" __global__ void rotary(float *x, const int *positions, const float *cosines, const float *sines,
                                  int width, int head_dim, int half) {
    int t = blockIdx.x;
    int heads = width / head_dim;
    const float *c = cosines + (long)positions[t] * half, *s = sines + (long)positions[t] * half;
    for (int item = threadIdx.x; item < heads * half; item += blockDim.x) {
        int head = item / half, i = item % half;
        float *v = x + (long)t * width + head * head_dim;
        float first = v[i], second = v[i + half];
        v[i] = first * c[i] + (-second) * s[i];
        v[i + half] = second * c[i] + first * s[i];
    }
}

extern "C" __global__ void clamp_values(float *x, long count, float limit) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < count) x[i] = fminf(fmaxf(x[i], -limit), limit);
}

extern "C" __global__ void store_kv(const float *keys, const float *values, const int *slots, float *cache_keys, float *cache_values, int width) {
    int t = blockIdx.x;
    long slot = slots[t];
    for (int i = threadIdx.x; i < width; i += blockDim.x) {
        cache_keys[slot * width + i] = keys[(long)t * width + i];
        cache_values[slot * width + i] = values[(long)t * width + i];
    }
}

// One warp per (token, head): scores of every visible key, softmax, weighted sum of values.
// `scores` holds `max_context` floats per (token, head). Grid: tokens·heads / warpsPerBlock.
extern "C" __global__ void attention(const float *queries, const float *cache_keys, const float *cache_values,
                                     const int *positions, const int *token_requests, const int *block_tables, int table_width,
                                     float *out, float *scores, int max_context, int tokens, int heads, int kv_heads, int head_dim,
                                     int block_size, float scale, int window) {
    const int lane = threadIdx.x & 31;
    const int item = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (item >= tokens * heads) return;
    const int t = item / heads, head = item % heads;
    const int position = positions[t];
    const int first = window > 0 ? max(0, position - window + 1) : 0;
    const int *table = block_tables + (long)token_requests[t] * table_width;
    const int kv_width = kv_heads * head_dim;
    const int kv_offset = (head / (heads / kv_heads)) * head_dim;
    const float *q = queries + (long)t * heads * head_dim + head * head_dim;
    float *score = scores + (long)item * max_context;
    float maximum = __int_as_float(0xff800000);  // −∞
    for (int key = first; key <= position; ++key) {
        long slot = (long)table[key / block_size] * block_size + key % block_size;
        const float *k = cache_keys + slot * kv_width + kv_offset;
        float partial = 0.f;
        for (int i = lane; i < head_dim; i += 32) partial += q[i] * k[i];
        float s = warp_sum(partial) * scale;
        if (lane == 0) score[key - first] = s;
        maximum = fmaxf(maximum, s);
    }
    __syncwarp();
    float total = 0.f;
    for (int index = lane; index <= position - first; index += 32) {
        float e = expf(score[index] - maximum);
        score[index] = e;
        total += e;
    }
    total = warp_sum(total);
    __syncwarp();
    float inverse = 1.f / total;
    float *target = out + (long)t * heads * head_dim + head * head_dim;
    for (int i = lane; i < head_dim; i += 32) {
        float sum = 0.f;
        for (int key = first; key <= position; ++key) {
            long slot = (long)table[key / block_size] * block_size + key % block_size;
            sum += score[key - first] * inverse * cache_values[slot * kv_width + kv_offset + i];
        }
        target[i] = sum;
    }
}

// One thread per token: softmax over experts, top-k by repeated maximum (ties to the lower index).
extern "C" __global__ void route_top_k(const float *logits, int *experts, float *weights, int tokens, int expert_count,
                                       int top_k, int renormalize) {
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= tokens) return;
    const float *row = logits + (long)t * expert_count;
    float maximum = __int_as_float(0xff800000);  // −∞
    for (int e = 0; e < expert_count; ++e) maximum = fmaxf(maximum, row[e]);
    float total = 0.f;
    for (int e = 0; e < expert_count; ++e) total += expf(row[e] - maximum);
    unsigned long long taken[8] = {0, 0, 0, 0, 0, 0, 0, 0};  // up to 512 experts
    float picked = 0.f;
    for (int k = 0; k < top_k; ++k) {
        int best = -1;
        float best_value = __int_as_float(0xff800000);
        for (int e = 0; e < expert_count; ++e) {
            if (taken[e >> 6] & (1ull << (e & 63))) continue;
            float p = expf(row[e] - maximum);
            if (p > best_value) { best_value = p; best = e; }
        }
        taken[best >> 6] |= 1ull << (best & 63);
        experts[(long)t * top_k + k] = best;
        weights[(long)t * top_k + k] = best_value / total;
        picked += best_value / total;
    }
    if (renormalize) for (int k = 0; k < top_k; ++k) weights[(long)t * top_k + k] /= picked;
}

// out[r, i] = silu(gate_up[r, i]) · gate_up[r, width + i]
extern "C" __global__ void silu_mul(const float *gate_up, float *out, long rows, int width) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * width) return;
    long r = i / width, c = i % width;
    float g = gate_up[r * 2 * width + c];
    out[i] = g * (1.f / (1.f + expf(-g))) * gate_up[r * 2 * width + width + c];
}

// out[t, :] = Σ_k weights[t, k] · expert_out[t·topK + k, :], in pick order.
extern "C" __global__ void combine(const float *expert_out, const float *weights, float *out, int top_k, int hidden) {
    int t = blockIdx.x;
    for (int i = threadIdx.x; i < hidden; i += blockDim.x) {
        float sum = 0.f;
        for (int k = 0; k < top_k; ++k) sum += weights[(long)t * top_k + k] * expert_out[((long)t * top_k + k) * hidden + i];
        out[(long)t * hidden + i] = sum;
    }
}

extern "C" __global__ void add(const float *a, const float *b, float *out, long count) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < count) out[i] = a[i] + b[i];
}

extern "C" __global__ void add_sigmoid_gated(const float *y, const float *gate, float *out, long rows, int width) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * width) return;
    out[i] += (1.f / (1.f + expf(-gate[i / width]))) * y[i];
}

extern "C" __global__ void gather_rows(const float *x, const int *rows, float *out, int width) {
    int r = blockIdx.x;
    long source = (long)rows[r] * width;
    for (int i = threadIdx.x; i < width; i += blockDim.x) out[(long)r * width + i] = x[source + i];
}
