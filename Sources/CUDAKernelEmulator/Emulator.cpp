// The CUDA driver API, NVRTC, cuBLAS and NCCL as far as CUDABackend uses them, on the CPU: device
// memory is host memory, "compiling" is a no-op, a launch runs the kernel from kernels.cu (the
// very source NVRTC compiles on a GPU machine) over its grid with KernelRuntime.hpp's threads, and
// cublasGemmEx is a plain triple loop with cuBLAS's column-major semantics. CI uses it to run the
// CUDA backend's own Swift code and kernels against the CPU reference.
#include "include/CUDAKernelEmulator.h"
#include "KernelRuntime.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

namespace emulator {
thread_local Index threadIndex;
thread_local Index blockIndex;
thread_local Index blockDimension;
thread_local Index gridDimension;
thread_local Block *currentBlock = nullptr;
}  // namespace emulator

#include "../ComputeCUDA/Kernels/kernels.cu"

namespace {

using Result = int;
constexpr Result success = 0;
constexpr Result invalidValue = 1;
constexpr Result notFound = 500;
constexpr Result notSupported = 801;

/// A kernel as cuModuleGetFunction hands it out: its name and how to call it from packed arguments.
struct Function {
    const char *name;
    void (*invoke)(const void *kernel, void **arguments);
    const void *kernel;
    std::vector<size_t> argumentSizes;
};

template <typename... Arguments, size_t... Indices>
void invokeUnpacked(void (*kernel)(Arguments...), void **arguments, std::index_sequence<Indices...>) {
    kernel(*static_cast<std::remove_reference_t<Arguments> *>(arguments[Indices])...);
}

template <typename... Arguments>
Function function(const char *name, void (*kernel)(Arguments...)) {
    return Function{name,
                    [](const void *kernel, void **arguments) {
                        invokeUnpacked(reinterpret_cast<void (*)(Arguments...)>(const_cast<void *>(kernel)), arguments,
                                       std::index_sequence_for<Arguments...>{});
                    },
                    reinterpret_cast<const void *>(kernel), {sizeof(Arguments)...}};
}

const std::vector<Function> functions = {
    function("fill_uniform", fill_uniform),
    function("fill_value", fill_value),
    function("embedding", embedding),
    function("add_bias", add_bias),
    function("rms_norm", rms_norm),
    function("add_rms_norm", add_rms_norm),
    function("rotary", rotary),
    function("clamp_values", clamp_values),
    function("silu_mul", silu_mul),
    function("add", add),
    function("add_sigmoid_gated", add_sigmoid_gated),
    function("gather_rows", gather_rows),
    function("prepare_latent_attention", prepare_latent_attention),
    function("latent_attention", latent_attention),
    function("store_kv", store_kv),
    function("prepare_attention", prepare_attention),
    function("attention", attention),
    function("attention_merge", attention_merge),
    function("attention_prefill", attention_prefill),
    function("attention_decode", attention_decode),
    function("gather_assignments", gather_assignments),
    function("route_top_k", route_top_k),
    function("sort_assignments", sort_assignments),
    function("expert_gate_up", expert_gate_up),
    function("expert_down", expert_down),
    function("expert_gemv_gate_up", expert_gemv_gate_up),
    function("expert_gemv_down_combine", expert_gemv_down_combine),
    function("combine", combine),
    function("linear_rows_1", linear_rows_1),
    function("linear_rows_2", linear_rows_2),
    function("linear_rows_4", linear_rows_4),
    function("sample_tokens", sample_tokens),
    function("ep_dispatch", ep_dispatch),
    function("ep_signal", ep_signal),
    function("ep_wait", ep_wait),
    function("ep_sort_received", ep_sort_received),
    function("ep_expert_gate_up", ep_expert_gate_up),
    function("ep_expert_down", ep_expert_down),
    function("ep_gemv_gate_up", ep_gemv_gate_up),
    function("ep_gemv_down", ep_gemv_down),
};

/// A kernel that waits for other ranks (threads of this process on the emulator) runs without
/// the launch lock, or the rank it waits for could never launch what it waits for. Neither uses a
/// `__shared__` static (the statics are shared by every launch) or a read-modify-write of memory
/// another rank touches.
bool waitsForPeers(const Function &function) {
    const std::string name = function.name;
    return name == "ep_wait" || name == "ep_sort_received";
}

/// Held through a launch: `__shared__` variables are statics, so two launches (two backends on
/// two test threads) must not overlap.
std::mutex launchLock;

/// Stream capture: while a thread captures, its launches and GEMMs are recorded (arguments copied,
/// as CUDA copies kernel parameters into a graph node) instead of run; a graph replays them in order.
using Graph = std::vector<std::function<void()>>;
thread_local Graph *capturing = nullptr;

/// The kernel and arguments of the launch being run, for `fiberMain`.
thread_local const Function *launchedFunction = nullptr;
thread_local void **launchedArguments = nullptr;

/// A fiber's whole life: it ends by handing control back for good (it is never resumed).
[[noreturn]] void fiberMain() {
    emulator::Block &block = *emulator::currentBlock;
    launchedFunction->invoke(launchedFunction->kernel, launchedArguments);
    emulator::Fiber &fiber = block.fibers[block.current];
    fiber.state = emulator::State::done;
    emulator::switchContext(fiber.context, block.scheduler);
    std::abort();
}

/// Fiber stacks, made once per launching thread and reused by every block.
constexpr size_t stackBytes = 128 << 10;
thread_local std::vector<std::unique_ptr<char[]>> stacks;

#if defined(__x86_64__)
// Saves the callee-saved registers, SSE and x87 control words on the current stack, stores the
// stack pointer in *save (rdi), then loads `load` (rsi) and restores what it saved there.
asm(R"(
    .pushsection .text
    .globl flexpert_emulator_switch
    .type flexpert_emulator_switch, @function
flexpert_emulator_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size flexpert_emulator_switch, .-flexpert_emulator_switch
    .popsection
)");

/// A stack that the first switch to it enters at fiberMain, as if fiberMain had been called
/// (16-byte alignment after the return address), with the launching thread's control words.
void startFiber(emulator::Fiber &fiber, char *stack, emulator::Block &) {
    auto top = reinterpret_cast<uintptr_t>(stack + stackBytes) & ~uintptr_t(15);
    auto *slots = reinterpret_cast<uint64_t *>(top);
    slots[-1] = 0;                                             // fiberMain's return address: none
    slots[-2] = reinterpret_cast<uint64_t>(&fiberMain);        // where the switch returns to
    for (int i = 3; i <= 8; ++i) slots[-i] = 0;                 // rbp, rbx, r12–r15
    uint32_t controls[2] = {};
    asm volatile("stmxcsr %0\n\tfnstcw %1" : "=m"(controls[0]), "=m"(controls[1]));
    std::memcpy(&slots[-9], controls, 8);
    fiber.context.stack = &slots[-9];
}
#else
void startFiber(emulator::Fiber &fiber, char *stack, emulator::Block &block) {
    getcontext(&fiber.context.context);
    fiber.context.context.uc_stack.ss_sp = stack;
    fiber.context.context.uc_stack.ss_size = stackBytes;
    fiber.context.context.uc_link = &block.scheduler.context;
    makecontext(&fiber.context.context, fiberMain, 0);
}
#endif

/// Runs the block's threads until all return: each runnable fiber runs to its next barrier, and a
/// barrier opens when every thread still running (of the block, or of the warp) has reached it.
void runBlock(emulator::Block &block, unsigned threads) {
    // Lanes that returned early did fewer shuffles: every block starts its warps' rows afresh.
    for (emulator::Warp &warp : block.warps) std::memset(warp.row, 0, sizeof warp.row);
    for (unsigned t = 0; t < threads; ++t) {
        emulator::Fiber &fiber = block.fibers[t];
        fiber.state = emulator::State::runnable;
        startFiber(fiber, stacks[t].get(), block);
    }
    for (;;) {
        bool ran = false;
        for (unsigned t = 0; t < threads; ++t) {
            if (block.fibers[t].state != emulator::State::runnable) continue;
            emulator::threadIndex = {t, 0, 0};
            block.current = t;
            emulator::switchContext(block.scheduler, block.fibers[t].context);
            ran = true;
        }
        bool live = false, released = false, allAtBlockBarrier = true;
        for (unsigned t = 0; t < threads; ++t) {
            const emulator::State state = block.fibers[t].state;
            if (state == emulator::State::done) continue;
            live = true;
            if (state != emulator::State::atBlockBarrier) allAtBlockBarrier = false;
        }
        if (!live) return;
        if (allAtBlockBarrier) {
            for (auto &fiber : block.fibers) if (fiber.state == emulator::State::atBlockBarrier) fiber.state = emulator::State::runnable;
            released = true;
        }
        for (unsigned first = 0; first < threads; first += 32) {
            const unsigned last = std::min(threads, first + 32);
            bool waiting = false, allAtWarpBarrier = true;
            for (unsigned t = first; t < last; ++t) {
                const emulator::State state = block.fibers[t].state;
                if (state == emulator::State::done) continue;
                waiting = true;
                if (state != emulator::State::atWarpBarrier) allAtWarpBarrier = false;
            }
            if (waiting && allAtWarpBarrier) {
                for (unsigned t = first; t < last; ++t)
                    if (block.fibers[t].state == emulator::State::atWarpBarrier) block.fibers[t].state = emulator::State::runnable;
                released = true;
            }
        }
        if (!ran && !released) {
            std::fprintf(stderr, "CUDA emulator: kernel %s deadlocks: its threads wait at different barriers\n", launchedFunction->name);
            std::abort();
        }
    }
}

/// Runs every block of the grid in turn on the calling thread.
void run(const Function &function, emulator::Index grid, unsigned threads, unsigned sharedBytes, void **arguments) {
    while (stacks.size() < threads) stacks.push_back(std::make_unique<char[]>(stackBytes));
    emulator::Block block;
    block.fibers.resize(threads);
    block.warps.resize((threads + 31) / 32);
    block.dynamicShared.resize(sharedBytes + 16);
    launchedFunction = &function;
    launchedArguments = arguments;
    emulator::blockDimension = {threads, 1, 1};
    emulator::gridDimension = grid;
    emulator::currentBlock = &block;
    for (unsigned z = 0; z < grid.z; ++z)
        for (unsigned y = 0; y < grid.y; ++y)
            for (unsigned x = 0; x < grid.x; ++x) {
                emulator::blockIndex = {x, y, z};
                runBlock(block, threads);
            }
    emulator::currentBlock = nullptr;
}

/// A launch, under the launch lock unless the kernel waits for peers.
void launch(const Function &function, emulator::Index grid, unsigned threads, unsigned sharedBytes, void **arguments) {
    if (waitsForPeers(function)) {
        run(function, grid, threads, sharedBytes, arguments);
        return;
    }
    std::lock_guard<std::mutex> hold(launchLock);
    run(function, grid, threads, sharedBytes, arguments);
}

// ---- Driver API ----

Result cuInit(unsigned) { return success; }
Result cuDeviceGetCount(int *count) { *count = 1; return success; }
Result cuDeviceGet(int *device, int) { *device = 0; return success; }
Result cuDeviceGetName(char *name, int length, int) {
    std::snprintf(name, static_cast<size_t>(length), "Flexpert CUDA emulator");
    return success;
}
Result cuDeviceGetAttribute(int *value, int attribute, int) {
    switch (attribute) {
    case 75: *value = 8; return success;   // compute capability major
    case 76: *value = 0; return success;   // minor
    case 16: *value = 4; return success;   // multiprocessors
    default: return invalidValue;
    }
}
int dummyObject;
Result handOut(void **object) { *object = &dummyObject; return success; }
Result cuDevicePrimaryCtxRetain(void **context, int) { return handOut(context); }
Result cuCtxSetCurrent(void *) { return success; }
Result synchronizeNothing() { return success; }
// Device memory is host memory; the bytes handed out are counted so that cuMemGetInfo reports
// what a GPU would, and a leak shows in tests as memory that does not come back.
constexpr size_t emulatedMemory = size_t(8) << 30;
std::mutex memoryLock;
std::unordered_map<uint64_t, size_t> allocations;
size_t allocatedBytes = 0;
Result cuMemAlloc(uint64_t *address, size_t bytes) {
    const size_t rounded = (bytes + 255) / 256 * 256;
    std::lock_guard<std::mutex> hold(memoryLock);
    if (allocatedBytes + rounded > emulatedMemory) return 2;  // CUDA_ERROR_OUT_OF_MEMORY
    void *memory = std::aligned_alloc(256, rounded);
    if (!memory) return 2;
    *address = reinterpret_cast<uint64_t>(memory);
    allocations[*address] = rounded;
    allocatedBytes += rounded;
    return success;
}
Result cuMemFree(uint64_t address) {
    std::lock_guard<std::mutex> hold(memoryLock);
    const auto found = allocations.find(address);
    if (found == allocations.end()) return invalidValue;
    allocatedBytes -= found->second;
    allocations.erase(found);
    std::free(reinterpret_cast<void *>(address));
    return success;
}
// CUDA IPC between emulated ranks, which are threads of one process: a handle names the process
// and the address, and opening it in that process hands the address back (a real driver maps
// the memory into another process; that is for GPU machines).
struct IPCMemHandle {
    char reserved[64];
};
constexpr char ipcMagic[16] = "flexpert-emu";
Result cuIpcGetMemHandle(IPCMemHandle *handle, uint64_t address) {
    {
        std::lock_guard<std::mutex> hold(memoryLock);
        if (allocations.find(address) == allocations.end()) return invalidValue;
    }
    std::memset(handle, 0, sizeof *handle);
    std::memcpy(handle->reserved, ipcMagic, sizeof ipcMagic);
    const int64_t process = getpid();
    std::memcpy(handle->reserved + 16, &process, 8);
    std::memcpy(handle->reserved + 24, &address, 8);
    return success;
}
Result cuIpcOpenMemHandle(uint64_t *address, IPCMemHandle handle, unsigned) {
    int64_t process = 0;
    std::memcpy(&process, handle.reserved + 16, 8);
    if (std::memcmp(handle.reserved, ipcMagic, sizeof ipcMagic) != 0) return invalidValue;
    if (process != getpid()) return notSupported;
    std::memcpy(address, handle.reserved + 24, 8);
    return success;
}
Result cuIpcCloseMemHandle(uint64_t) { return success; }

// The virtual memory API, as Linux does it: an allocation is a memfd (its handle the descriptor),
// a reserved range is an inaccessible anonymous mapping, and mapping an allocation maps the memfd
// shared at that address. So an exported descriptor maps the same pages in any process, and the
// pages live while any descriptor or mapping does, as on a GPU.
struct MemLocation {
    int type;
    int id;
};
struct MemAllocationProp {
    int type;
    int requestedHandleTypes;
    MemLocation location;
    void *win32HandleMetaData;
    unsigned char allocFlags[8];
};
struct MemAccessDesc {
    MemLocation location;
    int flags;
};
constexpr size_t vmmGranularity = 2 << 20;
constexpr int posixDescriptor = 1;

Result cuMemGetAllocationGranularity(size_t *granularity, const MemAllocationProp *, int) {
    *granularity = vmmGranularity;
    return success;
}
Result cuMemCreate(uint64_t *handle, size_t bytes, const MemAllocationProp *properties, unsigned long long) {
    if (bytes == 0 || bytes % vmmGranularity != 0 || properties->requestedHandleTypes != posixDescriptor) return invalidValue;
    const int descriptor = memfd_create("flexpert-emulated-vmm", MFD_CLOEXEC);
    if (descriptor < 0) return 2;
    if (ftruncate(descriptor, static_cast<off_t>(bytes)) != 0) {
        close(descriptor);
        return 2;
    }
    *handle = static_cast<uint64_t>(descriptor);
    return success;
}
Result cuMemExportToShareableHandle(void *shareable, uint64_t handle, int type, unsigned long long) {
    if (type != posixDescriptor) return notSupported;
    const int descriptor = fcntl(static_cast<int>(handle), F_DUPFD_CLOEXEC, 0);
    if (descriptor < 0) return invalidValue;
    *static_cast<int *>(shareable) = descriptor;
    return success;
}
Result cuMemImportFromShareableHandle(uint64_t *handle, void *shareable, int type) {
    if (type != posixDescriptor) return notSupported;
    const int descriptor = fcntl(static_cast<int>(reinterpret_cast<intptr_t>(shareable)), F_DUPFD_CLOEXEC, 0);
    if (descriptor < 0) return invalidValue;
    *handle = static_cast<uint64_t>(descriptor);
    return success;
}
Result cuMemAddressReserve(uint64_t *address, size_t bytes, size_t, uint64_t, unsigned long long) {
    void *range = mmap(nullptr, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (range == MAP_FAILED) return 2;
    *address = reinterpret_cast<uint64_t>(range);
    return success;
}
Result cuMemAddressFree(uint64_t address, size_t bytes) {
    return munmap(reinterpret_cast<void *>(address), bytes) == 0 ? success : invalidValue;
}
Result cuMemMap(uint64_t address, size_t bytes, size_t offset, uint64_t handle, unsigned long long) {
    void *mapped = mmap(reinterpret_cast<void *>(address), bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
                        static_cast<int>(handle), static_cast<off_t>(offset));
    return mapped == MAP_FAILED ? invalidValue : success;
}
Result cuMemUnmap(uint64_t address, size_t bytes) {
    void *range = mmap(reinterpret_cast<void *>(address), bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
    return range == MAP_FAILED ? invalidValue : success;
}
Result cuMemSetAccess(uint64_t, size_t, const MemAccessDesc *, size_t count) { return count >= 1 ? success : invalidValue; }
Result cuMemRelease(uint64_t handle) { return close(static_cast<int>(handle)) == 0 ? success : invalidValue; }
Result cuDeviceCanAccessPeer(int *canAccess, int, int) { *canAccess = 1; return success; }

Result cuDeviceTotalMem(size_t *bytes, int) {
    *bytes = emulatedMemory;
    return success;
}
Result cuMemGetInfo(size_t *free, size_t *total) {
    std::lock_guard<std::mutex> hold(memoryLock);
    *free = emulatedMemory - allocatedBytes;
    *total = emulatedMemory;
    return success;
}
Result cuMemsetD8(uint64_t address, unsigned char value, size_t bytes) {
    std::memset(reinterpret_cast<void *>(address), value, bytes);
    return success;
}
Result cuMemcpyHtoDAsync(uint64_t target, const void *source, size_t bytes, void *) {
    std::memcpy(reinterpret_cast<void *>(target), source, bytes);
    return success;
}
Result cuMemcpyDtoHAsync(void *target, uint64_t source, size_t bytes, void *) {
    std::memcpy(target, reinterpret_cast<const void *>(source), bytes);
    return success;
}
Result cuMemcpyDtoDAsync(uint64_t target, uint64_t source, size_t bytes, void *) {
    std::memcpy(reinterpret_cast<void *>(target), reinterpret_cast<const void *>(source), bytes);
    return success;
}
Result cuMemHostAlloc(void **pointer, size_t bytes, unsigned) {
    *pointer = std::malloc(bytes);
    return *pointer ? success : 2;
}
Result cuModuleLoadData(void **module, const void *) { return handOut(module); }
Result cuModuleGetFunction(const Function **out, void *, const char *name) {
    for (const Function &function : functions)
        if (std::string(function.name) == name) { *out = &function; return success; }
    return notFound;
}
Result cuLaunchKernel(const Function *function, unsigned gridX, unsigned gridY, unsigned gridZ, unsigned blockX, unsigned blockY,
                      unsigned blockZ, unsigned sharedBytes, void *, void **arguments, void **) {
    if (!function || blockY != 1 || blockZ != 1 || blockX == 0 || blockX > 1024 || gridX == 0 || gridY == 0 || gridZ == 0)
        return invalidValue;
    const emulator::Index grid{gridX, gridY, gridZ};
    if (capturing) {
        std::vector<unsigned char> bytes;
        std::vector<size_t> offsets;
        for (size_t index = 0; index < function->argumentSizes.size(); ++index) {
            offsets.push_back(bytes.size());
            const auto *value = static_cast<const unsigned char *>(arguments[index]);
            bytes.insert(bytes.end(), value, value + function->argumentSizes[index]);
            bytes.resize((bytes.size() + 7) / 8 * 8);
        }
        capturing->push_back([function, grid, blockX, sharedBytes, bytes, offsets]() mutable {
            std::vector<void *> pointers;
            for (size_t offset : offsets) pointers.push_back(bytes.data() + offset);
            launch(*function, grid, blockX, sharedBytes, pointers.data());
        });
        return success;
    }
    launch(*function, grid, blockX, sharedBytes, arguments);
    return success;
}
Result cuGetErrorString(Result code, const char **message) {
    *message = code == notFound ? "named symbol not found (emulator)" : code == notSupported ? "not supported by the emulator"
                                                                                             : "emulated CUDA error";
    return success;
}
Result cuDriverGetVersion(int *version) { *version = 13000; return success; }
Result cuStreamCreate(void **stream, unsigned) { return handOut(stream); }
Result cuStreamSynchronize(void *) { return success; }
Result cuStreamDestroy(void *) { return success; }
// Work runs as it is enqueued, in order: every stream has already waited for every event.
Result cuStreamWaitEvent(void *, void *, unsigned) { return success; }
Result cuFuncSetAttribute(const void *, int, int) { return success; }
Result cuStreamBeginCapture(void *, int) {
    if (capturing) return invalidValue;
    capturing = new Graph();
    return success;
}
Result cuStreamEndCapture(void *, Graph **graph) {
    if (!capturing) return invalidValue;
    *graph = capturing;
    capturing = nullptr;
    return success;
}
Result cuGraphInstantiate(Graph **executable, Graph *graph, unsigned long long) {
    *executable = new Graph(*graph);
    return success;
}
// Each recorded operation takes the launch lock itself (a wait for peers does not).
Result cuGraphLaunch(Graph *executable, void *) {
    if (capturing) return invalidValue;
    for (auto &operation : *executable) operation();
    return success;
}
Result destroyGraph(Graph *graph) { delete graph; return success; }
Result cuEventCreate(void **event, unsigned) { return handOut(event); }
Result cuEventDestroy(void *) { return success; }
Result cuEventRecord(void *, void *) { return success; }
Result cuEventRecordWithFlags(void *, void *, unsigned) { return success; }
Result cuEventSynchronize(void *) { return success; }
Result cuEventQuery(void *) { return success; }
Result cuEventElapsedTime(float *milliseconds, void *, void *) { *milliseconds = 0; return success; }

// ---- NVRTC ----

Result nvrtcVersion(int *major, int *minor) { *major = 0; *minor = 0; return success; }
Result nvrtcCreateProgram(void **program, const char *, const char *, int, const char *const *, const char *const *) {
    return handOut(program);
}
Result nvrtcCompileProgram(void *, int, const char *const *) { return success; }
Result nvrtcGetProgramLogSize(void *, size_t *size) { *size = 1; return success; }
Result nvrtcGetProgramLog(void *, char *log) { log[0] = 0; return success; }
Result nvrtcGetCUBINSize(void *, size_t *size) { *size = 8; return success; }
Result nvrtcGetCUBIN(void *, char *cubin) { std::memcpy(cubin, "emulated", 8); return success; }
Result nvrtcDestroyProgram(void **) { return success; }

// ---- cuBLAS ----

float loadElement(const void *base, int type, size_t index) {
    if (type == 0) return static_cast<const float *>(base)[index];
    return std::bit_cast<float>(static_cast<uint32_t>(static_cast<const uint16_t *>(base)[index]) << 16);
}

void storeElement(void *base, int type, size_t index, float value) {
    if (type == 0) { static_cast<float *>(base)[index] = value; return; }
    static_cast<uint16_t *>(base)[index] = to_bf16(value);
}

Result cublasCreate(void **handle) { return handOut(handle); }
Result cublasDestroy(void *) { return success; }
Result cublasSetStream(void *, void *) { return success; }
Result cublasSetWorkspace(void *, uint64_t, size_t) { return success; }
/// C = α·op(A)·op(B) + β·C, column-major, op(X) = X or Xᵀ; float32 or bf16 (14) operands.
Result cublasGemmEx(void *, int transA, int transB, int m, int n, int k, const float *alpha, uint64_t a, int typeA, int lda,
                    uint64_t b, int typeB, int ldb, const float *beta, uint64_t c, int typeC, int ldc, int computeType, int) {
    for (int type : {typeA, typeB, typeC})
        if (type != 0 && type != 14) return 15;  // CUBLAS_STATUS_NOT_SUPPORTED
    if (computeType != 68 || m < 0 || n < 0 || k < 0) return 7;  // CUBLAS_STATUS_INVALID_VALUE
    if (capturing) {
        const float alphaValue = *alpha, betaValue = *beta;
        capturing->push_back([=] {
            cublasGemmEx(nullptr, transA, transB, m, n, k, &alphaValue, a, typeA, lda, b, typeB, ldb, &betaValue, c, typeC, ldc,
                         computeType, 0);
        });
        return success;
    }
    const void *pa = reinterpret_cast<const void *>(a), *pb = reinterpret_cast<const void *>(b);
    void *pc = reinterpret_cast<void *>(c);
    for (int j = 0; j < n; ++j)
        for (int i = 0; i < m; ++i) {
            float sum = 0.f;
            for (int l = 0; l < k; ++l) {
                const size_t atA = transA ? size_t(i) * lda + l : size_t(l) * lda + i;
                const size_t atB = transB ? size_t(l) * ldb + j : size_t(j) * ldb + l;
                sum += loadElement(pa, typeA, atA) * loadElement(pb, typeB, atB);
            }
            const size_t atC = size_t(j) * ldc + i;
            const float previous = *beta == 0.f ? 0.f : loadElement(pc, typeC, atC);
            storeElement(pc, typeC, atC, *alpha * sum + *beta * previous);
        }
    return success;
}

/// cublasGemmEx once per batch, each operand advanced by its stride in elements.
Result cublasGemmStridedBatchedEx(void *handle, int transA, int transB, int m, int n, int k, const float *alpha, uint64_t a,
                                  int typeA, int lda, long long strideA, uint64_t b, int typeB, int ldb, long long strideB,
                                  const float *beta, uint64_t c, int typeC, int ldc, long long strideC, int batches, int computeType,
                                  int algorithm) {
    auto bytes = [](int type) -> uint64_t { return type == 0 ? 4 : 2; };
    for (int batch = 0; batch < batches; ++batch) {
        const Result result = cublasGemmEx(handle, transA, transB, m, n, k, alpha, a + uint64_t(batch * strideA) * bytes(typeA), typeA,
                                           lda, b + uint64_t(batch * strideB) * bytes(typeB), typeB, ldb, beta,
                                           c + uint64_t(batch * strideC) * bytes(typeC), typeC, ldc, computeType, algorithm);
        if (result != success) return result;
    }
    return success;
}

// ---- NCCL ----
// A communicator of one rank: what lets CI run NCCLCollectives' calls (grouped sends to itself);
// communicators of several ranks need several GPUs and are refused.

struct UniqueID {
    char internal[128];
};
// NCCL: communicators of one or several ranks, the ranks being threads of this process, each with
// its own emulated GPU (device memory is host memory, so a receive copies straight from the
// sender's buffer). Ranks meet in a World named by the unique id. A group's sends are posted when
// it ends; its receives then take the matching sends, in order per (source, destination), and the
// group returns once its own sends were taken, as a stream would have passed the group. Waits give
// up after a minute (a peer that never comes), as NCCL never does.
struct World {
    std::mutex lock;
    std::condition_variable changed;
    int ranks = 0, joined = 0;
    std::map<std::pair<int, int>, std::deque<std::pair<const void *, size_t>>> posted;   // (source, destination)
    std::map<std::pair<int, int>, size_t> taken;                                       // sends taken per pair
};
struct Communicator {
    std::shared_ptr<World> world;
    int rank;
};
struct PendingCopy {
    Communicator *communicator;
    int peer;
    void *buffer;
    size_t bytes;
};
std::mutex worldsLock;
std::map<std::string, std::shared_ptr<World>> worlds;
std::atomic<uint64_t> uniqueIDs{0};
thread_local std::vector<PendingCopy> pendingSends, pendingReceives;
thread_local int groupDepth = 0;
constexpr Result ncclSystemError = 2, ncclInvalidArgument = 4, ncclInvalidUsage = 5;
constexpr auto patience = std::chrono::seconds(60);

Result ncclGetVersion(int *version) { *version = 22800; return success; }
Result ncclGetUniqueId(UniqueID *id) {
    std::memset(id->internal, 0, sizeof id->internal);
    std::snprintf(id->internal, sizeof id->internal, "emulated %llu", static_cast<unsigned long long>(++uniqueIDs));
    return success;
}
Result ncclCommInitRank(void **communicator, int ranks, UniqueID id, int rank) {
    if (ranks < 1 || rank < 0 || rank >= ranks || std::strncmp(id.internal, "emulated ", 9) != 0) return ncclInvalidArgument;
    std::shared_ptr<World> world;
    {
        std::lock_guard<std::mutex> guard(worldsLock);
        auto &slot = worlds[std::string(id.internal)];
        if (!slot) {
            slot = std::make_shared<World>();
            slot->ranks = ranks;
        }
        world = slot;
    }
    std::unique_lock<std::mutex> guard(world->lock);
    if (world->ranks != ranks || world->joined >= ranks) return ncclInvalidUsage;
    ++world->joined;
    world->changed.notify_all();
    if (!world->changed.wait_for(guard, patience, [&] { return world->joined == world->ranks; })) return ncclSystemError;
    *communicator = new Communicator{world, rank};
    return success;
}
Result ncclCommRelease(void *communicator) {
    delete static_cast<Communicator *>(communicator);
    return success;
}
Result ncclCommGetAsyncError(void *, Result *error) { *error = success; return success; }
const char *ncclGetErrorString(Result code) {
    switch (code) {
    case ncclSystemError: return "system error (the emulator waited a minute for a peer)";
    case ncclInvalidArgument: return "invalid argument";
    case ncclInvalidUsage: return "invalid usage";
    default: return "emulated NCCL error";
    }
}
Result ncclGroupStart() { ++groupDepth; return success; }
Result endGroup() {
    // Every operation of a group goes through one communicator (NCCLCollectives' exchanges do).
    Communicator *communicator = !pendingSends.empty() ? pendingSends[0].communicator
                               : !pendingReceives.empty() ? pendingReceives[0].communicator : nullptr;
    if (!communicator) return success;
    World &world = *communicator->world;
    const int me = communicator->rank;
    std::unique_lock<std::mutex> guard(world.lock);
    std::map<int, size_t> mine;   // sends to each peer this group posts, to wait for
    for (const PendingCopy &send : pendingSends) {
        if (send.communicator != communicator) return ncclInvalidUsage;
        world.posted[{me, send.peer}].push_back({send.buffer, send.bytes});
        ++mine[send.peer];
    }
    world.changed.notify_all();
    std::map<int, size_t> before;
    for (auto &[peer, count] : mine) before[peer] = world.taken[{me, peer}] + world.posted[{me, peer}].size() - count;
    for (const PendingCopy &receive : pendingReceives) {
        if (receive.communicator != communicator) return ncclInvalidUsage;
        auto &queue = world.posted[{receive.peer, me}];
        if (!world.changed.wait_for(guard, patience, [&] { return !queue.empty(); })) return ncclSystemError;
        const auto [source, bytes] = queue.front();
        if (bytes != receive.bytes) return ncclInvalidUsage;
        std::memcpy(receive.buffer, source, bytes);
        queue.pop_front();
        ++world.taken[{receive.peer, me}];
        world.changed.notify_all();
    }
    for (auto &[peer, count] : mine) {
        const size_t target = before[peer] + count;
        if (!world.changed.wait_for(guard, patience, [&] { return world.taken[{me, peer}] >= target; })) return ncclSystemError;
    }
    return success;
}
Result ncclGroupEnd() {
    if (groupDepth == 0) return ncclInvalidUsage;
    if (--groupDepth > 0) return success;
    const Result result = endGroup();
    pendingSends.clear();
    pendingReceives.clear();
    return result;
}
Result ncclSend(const void *buffer, size_t count, int type, int peer, void *communicator, void *) {
    auto *comm = static_cast<Communicator *>(communicator);
    if (type != 0 || !comm || peer < 0 || peer >= comm->world->ranks || groupDepth == 0) return ncclInvalidArgument;
    pendingSends.push_back({comm, peer, const_cast<void *>(buffer), count});
    return success;
}
Result ncclRecv(void *buffer, size_t count, int type, int peer, void *communicator, void *) {
    auto *comm = static_cast<Communicator *>(communicator);
    if (type != 0 || !comm || peer < 0 || peer >= comm->world->ranks || groupDepth == 0) return ncclInvalidArgument;
    pendingReceives.push_back({comm, peer, buffer, count});
    return success;
}

struct Symbol {
    const char *name;
    const void *address;
};

#define SYMBOL(name, function) Symbol{name, reinterpret_cast<const void *>(&function)}

const Symbol symbols[] = {
    SYMBOL("cuInit", cuInit),
    SYMBOL("cuDeviceGetCount", cuDeviceGetCount),
    SYMBOL("cuDeviceGet", cuDeviceGet),
    SYMBOL("cuDeviceGetName", cuDeviceGetName),
    SYMBOL("cuDeviceGetAttribute", cuDeviceGetAttribute),
    SYMBOL("cuDevicePrimaryCtxRetain", cuDevicePrimaryCtxRetain),
    SYMBOL("cuCtxSetCurrent", cuCtxSetCurrent),
    SYMBOL("cuCtxSynchronize", synchronizeNothing),
    SYMBOL("cuMemAlloc_v2", cuMemAlloc),
    SYMBOL("cuMemFree_v2", cuMemFree),
    SYMBOL("cuMemGetInfo_v2", cuMemGetInfo),
    SYMBOL("cuDeviceTotalMem_v2", cuDeviceTotalMem),
    SYMBOL("cuMemsetD8_v2", cuMemsetD8),
    SYMBOL("cuIpcGetMemHandle", cuIpcGetMemHandle),
    SYMBOL("cuIpcOpenMemHandle_v2", cuIpcOpenMemHandle),
    SYMBOL("cuIpcCloseMemHandle", cuIpcCloseMemHandle),
    SYMBOL("cuMemGetAllocationGranularity", cuMemGetAllocationGranularity),
    SYMBOL("cuMemCreate", cuMemCreate),
    SYMBOL("cuMemExportToShareableHandle", cuMemExportToShareableHandle),
    SYMBOL("cuMemImportFromShareableHandle", cuMemImportFromShareableHandle),
    SYMBOL("cuMemAddressReserve", cuMemAddressReserve),
    SYMBOL("cuMemAddressFree", cuMemAddressFree),
    SYMBOL("cuMemMap", cuMemMap),
    SYMBOL("cuMemUnmap", cuMemUnmap),
    SYMBOL("cuMemSetAccess", cuMemSetAccess),
    SYMBOL("cuMemRelease", cuMemRelease),
    SYMBOL("cuDeviceCanAccessPeer", cuDeviceCanAccessPeer),
    SYMBOL("cuModuleLoadData", cuModuleLoadData),
    SYMBOL("cuModuleGetFunction", cuModuleGetFunction),
    SYMBOL("cuLaunchKernel", cuLaunchKernel),
    SYMBOL("cuGetErrorString", cuGetErrorString),
    SYMBOL("cuDriverGetVersion", cuDriverGetVersion),
    SYMBOL("cuStreamCreate", cuStreamCreate),
    SYMBOL("cuStreamWaitEvent", cuStreamWaitEvent),
    SYMBOL("cuStreamSynchronize", cuStreamSynchronize),
    SYMBOL("cuStreamDestroy_v2", cuStreamDestroy),
    SYMBOL("cuMemcpyHtoDAsync_v2", cuMemcpyHtoDAsync),
    SYMBOL("cuMemcpyDtoHAsync_v2", cuMemcpyDtoHAsync),
    SYMBOL("cuMemcpyDtoDAsync_v2", cuMemcpyDtoDAsync),
    SYMBOL("cuMemHostAlloc", cuMemHostAlloc),
    SYMBOL("cuFuncSetAttribute", cuFuncSetAttribute),
    SYMBOL("cuStreamBeginCapture_v2", cuStreamBeginCapture),
    SYMBOL("cuStreamEndCapture", cuStreamEndCapture),
    SYMBOL("cuGraphInstantiateWithFlags", cuGraphInstantiate),
    SYMBOL("cuGraphLaunch", cuGraphLaunch),
    SYMBOL("cuGraphDestroy", destroyGraph),
    SYMBOL("cuGraphExecDestroy", destroyGraph),
    SYMBOL("cuEventCreate", cuEventCreate),
    SYMBOL("cuEventDestroy_v2", cuEventDestroy),
    SYMBOL("cuEventRecord", cuEventRecord),
    SYMBOL("cuEventRecordWithFlags", cuEventRecordWithFlags),
    SYMBOL("cuEventSynchronize", cuEventSynchronize),
    SYMBOL("cuEventQuery", cuEventQuery),
    SYMBOL("cuEventElapsedTime", cuEventElapsedTime),
    SYMBOL("nvrtcVersion", nvrtcVersion),
    SYMBOL("nvrtcCreateProgram", nvrtcCreateProgram),
    SYMBOL("nvrtcCompileProgram", nvrtcCompileProgram),
    SYMBOL("nvrtcGetProgramLogSize", nvrtcGetProgramLogSize),
    SYMBOL("nvrtcGetProgramLog", nvrtcGetProgramLog),
    SYMBOL("nvrtcGetCUBINSize", nvrtcGetCUBINSize),
    SYMBOL("nvrtcGetCUBIN", nvrtcGetCUBIN),
    SYMBOL("nvrtcDestroyProgram", nvrtcDestroyProgram),
    SYMBOL("cublasCreate_v2", cublasCreate),
    SYMBOL("cublasDestroy_v2", cublasDestroy),
    SYMBOL("cublasSetStream_v2", cublasSetStream),
    SYMBOL("cublasSetWorkspace_v2", cublasSetWorkspace),
    SYMBOL("cublasGemmEx", cublasGemmEx),
    SYMBOL("cublasGemmStridedBatchedEx", cublasGemmStridedBatchedEx),
    SYMBOL("ncclGetVersion", ncclGetVersion),
    SYMBOL("ncclGetUniqueId", ncclGetUniqueId),
    SYMBOL("ncclCommInitRank", ncclCommInitRank),
    SYMBOL("ncclCommDestroy", ncclCommRelease),
    SYMBOL("ncclCommAbort", ncclCommRelease),
    SYMBOL("ncclCommGetAsyncError", ncclCommGetAsyncError),
    SYMBOL("ncclGetErrorString", ncclGetErrorString),
    SYMBOL("ncclGroupStart", ncclGroupStart),
    SYMBOL("ncclGroupEnd", ncclGroupEnd),
    SYMBOL("ncclSend", ncclSend),
    SYMBOL("ncclRecv", ncclRecv),
};

}  // namespace

extern "C" const void *flexpert_emulator_symbol(const char *name) {
    for (const Symbol &symbol : symbols)
        if (std::string(symbol.name) == name) return symbol.address;
    return nullptr;
}
