#ifndef FLEXPERT_CUDA_KERNEL_EMULATOR_H
#define FLEXPERT_CUDA_KERNEL_EMULATOR_H

#ifdef __cplusplus
extern "C" {
#endif

/// The emulator's stand-in for a CUDA library symbol (driver API, NVRTC or cuBLAS), by the name
/// `dlsym` would be asked for, or null when the emulator does not provide it. CUDABackend resolves
/// every entry point through this instead of the real libraries when it runs on the emulator.
const void *_Nullable flexpert_emulator_symbol(const char *_Nonnull name);

#ifdef __cplusplus
}
#endif

#endif
