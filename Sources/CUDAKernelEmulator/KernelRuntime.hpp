// What kernels.cu needs from CUDA, on the CPU: a block's threads are fibers on the launching
// thread, switched at every barrier and shuffle, so barriers, shuffles and shared memory
// behave as on a GPU while one OS thread does all the work (no thousand threads contending with the
// rest of a CI machine). Blocks run one after another, so `__shared__` variables can be static; the
// PTX helpers are done lane by lane with the fragment layouts the PTX ISA documents. A kernel whose
// threads wait at different barriers is reported as a deadlock. For correctness, not speed.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <sched.h>
#include <time.h>
#include <ucontext.h>
#include <vector>

namespace emulator {

struct Index {
    unsigned x = 0, y = 0, z = 0;
};

/// Where one thread of the running block stands.
enum class State { runnable, atBlockBarrier, atWarpBarrier, done };

#if defined(__x86_64__)
/// A suspended fiber: its stack pointer, below the callee-saved registers that
/// `flexpert_emulator_switch` pushed. Switching saves no signal mask, where swapcontext makes a
/// system call per switch, which made kernels with many shuffles take minutes.
struct Context {
    void *stack = nullptr;
};
extern "C" void flexpert_emulator_switch(void **save, void *load);
inline void switchContext(Context &from, Context &to) { flexpert_emulator_switch(&from.stack, to.stack); }
#else
struct Context {
    ucontext_t context;
};
inline void switchContext(Context &from, Context &to) { swapcontext(&from.context, &to.context); }
#endif

struct Fiber {
    Context context;
    State state = State::runnable;
};

/// Room for what a warp's lanes exchange. Shuffles alternate between two exchange rows, so a
/// shuffle needs one barrier: a lane writes a row again only after every lane passed the barrier
/// of the shuffle in between, so after every lane read it.
struct Warp {
    uint64_t exchange[2][32] = {};
    uint8_t row[32] = {};
    uint32_t fragments[32][6] = {};
    const unsigned char *rows[32] = {};
};

struct Block {
    std::vector<Fiber> fibers;
    std::vector<Warp> warps;
    std::vector<unsigned char> dynamicShared;
    Context scheduler;
    unsigned current = 0;
};

extern thread_local Index threadIndex;
extern thread_local Index blockIndex;
extern thread_local Index blockDimension;
extern thread_local Index gridDimension;
extern thread_local Block *currentBlock;

/// Hands control back to the block's scheduler until the barrier `state` names completes.
inline void wait(State state) {
    Block &block = *currentBlock;
    Fiber &fiber = block.fibers[block.current];
    fiber.state = state;
    switchContext(fiber.context, block.scheduler);
}

inline Warp &currentWarp() { return currentBlock->warps[threadIndex.x / 32]; }

template <typename T>
T shuffle(T value, int sourceLane) {
    static_assert(sizeof(T) <= 8, "shuffles move at most 8 bytes");
    Warp &warp = currentWarp();
    const int lane = threadIndex.x & 31;
    uint64_t bits = 0;
    std::memcpy(&bits, &value, sizeof(T));
    const int row = warp.row[lane];
    warp.row[lane] ^= 1;
    warp.exchange[row][lane] = bits;
    wait(State::atWarpBarrier);
    bits = warp.exchange[row][sourceLane & 31];
    T result;
    std::memcpy(&result, &bits, sizeof(T));
    return result;
}

}  // namespace emulator

#define FLEXPERT_EMULATION 1
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(n)
#define threadIdx emulator::threadIndex
#define blockIdx emulator::blockIndex
#define blockDim emulator::blockDimension
#define gridDim emulator::gridDimension
#define DYNAMIC_SHARED(type, name) type *name = reinterpret_cast<type *>(emulator::currentBlock->dynamicShared.data())

using std::max;
using std::min;

inline float __int_as_float(unsigned bits) { return std::bit_cast<float>(bits); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline float __uint_as_float(unsigned bits) { return std::bit_cast<float>(bits); }
inline unsigned __float_as_uint(float value) { return std::bit_cast<unsigned>(value); }
// Separate roundings, as the _rn intrinsics promise (no contraction into a fused multiply-add).
inline float __fmul_rn(float a, float b) { volatile float product = a * b; return product; }
inline float __fsub_rn(float a, float b) { volatile float difference = a - b; return difference; }
inline float rsqrtf(float x) { return 1.f / std::sqrt(x); }
inline void __syncthreads() { emulator::wait(emulator::State::atBlockBarrier); }
inline void __syncwarp() { emulator::wait(emulator::State::atWarpBarrier); }
template <typename T> T __shfl_sync(unsigned, T value, int lane) { return emulator::shuffle(value, lane); }
template <typename T> T __shfl_xor_sync(unsigned, T value, int mask) {
    return emulator::shuffle(value, static_cast<int>(emulator::threadIndex.x & 31) ^ mask);
}
// One OS thread runs every fiber, switching only at barriers: a read-modify-write is already atomic.
inline int atomicAdd(int *address, int value) {
    const int old = *address;
    *address = old + value;
    return old;
}

inline unsigned long long atomicAdd(unsigned long long *address, unsigned long long value) {
    const unsigned long long old = *address;
    *address = old + value;
    return old;
}

// The peer exchange's flags are written by other ranks, which on the emulator are other threads
// of the process: real atomics, and a wait that lets them run.
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_system() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline unsigned long long load_acquire_system(const unsigned long long *address) { return __atomic_load_n(address, __ATOMIC_ACQUIRE); }
inline void store_release_system(unsigned long long *address, unsigned long long value) {
    __atomic_store_n(address, value, __ATOMIC_RELEASE);
}
inline unsigned long long global_nanoseconds() {
    timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return static_cast<unsigned long long>(now.tv_sec) * 1000000000ull + static_cast<unsigned long long>(now.tv_nsec);
}
inline void spin_pause() { sched_yield(); }

typedef unsigned int u32;
struct alignas(16) uint4 { unsigned x, y, z, w; };

/// cp.async of 16 bytes faults on a GPU unless both addresses are 16-byte aligned: so does this.
inline void copy_16(void *shared, const void *global, bool valid) {
    if ((reinterpret_cast<uintptr_t>(shared) | (valid ? reinterpret_cast<uintptr_t>(global) : 0)) % 16 != 0) {
        std::fprintf(stderr, "CUDA emulator: misaligned 16-byte cp.async (shared %p, global %p)\n", shared, global);
        std::abort();
    }
    if (valid) std::memcpy(shared, global, 16); else std::memset(shared, 0, 16);
}
inline void copy_commit() {}
template <int pending> void copy_wait() {}

/// The special function unit's 2^x flushes denormal results to zero; the emulator's exp2f is
/// within its error otherwise.
inline float fast_exp2(float x) {
    const float y = exp2f(x);
    return std::fpclassify(y) == FP_SUBNORMAL ? 0.f : y;
}

/// cvt.rn.bf16x2.f32: both halves rounded to nearest even, `low` in the low 16 bits.
inline u32 pack_bf16(float low, float high) {
    auto round = [](float f) {
        u32 bits = std::bit_cast<u32>(f);
        if ((bits & 0x7fffffffu) > 0x7f800000u) return (bits >> 16) | 0x40u;
        bits += 0x7fffu + ((bits >> 16) & 1u);
        return bits >> 16;
    };
    return round(low) | (round(high) << 16);
}

/// ldmatrix.sync.m8n8.x4(.trans) of bf16 for the calling lane: lane i gives the address of row
/// i % 8 of matrix i / 8; register j gets matrix j's elements (row lane / 4, columns 2 · (lane % 4)
/// and the next), or, transposed, (rows 2 · (lane % 4) and the next, column lane / 4).
inline void load_matrices(u32 *r, const void *shared, bool transposed) {
    emulator::Warp &warp = emulator::currentWarp();
    const int lane = emulator::threadIndex.x & 31;
    warp.rows[lane] = static_cast<const unsigned char *>(shared);
    emulator::wait(emulator::State::atWarpBarrier);
    const int group = lane >> 2, pair = (lane & 3) * 2;
    for (int j = 0; j < 4; ++j) {
        if (transposed) {
            unsigned short low, high;
            std::memcpy(&low, warp.rows[8 * j + pair] + 2 * group, 2);
            std::memcpy(&high, warp.rows[8 * j + pair + 1] + 2 * group, 2);
            r[j] = static_cast<u32>(low) | (static_cast<u32>(high) << 16);
        } else {
            std::memcpy(&r[j], warp.rows[8 * j + group] + 2 * pair, 4);
        }
    }
    emulator::wait(emulator::State::atWarpBarrier);
}
inline void ldmatrix_x4(u32 *r, const void *shared) { load_matrices(r, shared, false); }
inline void ldmatrix_x4_trans(u32 *r, const void *shared) { load_matrices(r, shared, true); }

/// mma.sync.m16n8k16 (row-major A, column-major B, bf16 in, float32 accumulate) for the calling
/// lane: every lane posts its fragments, and each then rebuilds the whole tiles from them.
inline void mma_bf16(float *c, const u32 *a, const u32 *b) {
    emulator::Warp &warp = emulator::currentWarp();
    const int lane = emulator::threadIndex.x & 31;
    for (int i = 0; i < 4; ++i) warp.fragments[lane][i] = a[i];
    for (int i = 0; i < 2; ++i) warp.fragments[lane][4 + i] = b[i];
    emulator::wait(emulator::State::atWarpBarrier);
    auto element = [](uint32_t pair, int high) { return std::bit_cast<float>((high ? pair >> 16 : pair & 0xffffu) << 16); };
    float tileA[16][16], tileB[16][8];
    for (int source = 0; source < 32; ++source) {
        const int group = source >> 2, pair = (source & 3) * 2;
        const uint32_t *f = warp.fragments[source];
        for (int h = 0; h < 2; ++h) {
            tileA[group][pair + h] = element(f[0], h);
            tileA[group + 8][pair + h] = element(f[1], h);
            tileA[group][pair + 8 + h] = element(f[2], h);
            tileA[group + 8][pair + 8 + h] = element(f[3], h);
            tileB[pair + h][group] = element(f[4], h);
            tileB[pair + 8 + h][group] = element(f[5], h);
        }
    }
    const int group = lane >> 2, pair = (lane & 3) * 2;
    for (int i = 0; i < 4; ++i) {
        const int row = group + (i >= 2 ? 8 : 0), column = pair + (i & 1);
        float sum = 0.f;
        for (int k = 0; k < 16; ++k) sum += tileA[row][k] * tileB[k][column];
        c[i] += sum;
    }
    emulator::wait(emulator::State::atWarpBarrier);
}
