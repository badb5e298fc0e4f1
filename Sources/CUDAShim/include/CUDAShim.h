#ifndef FLEXPERT_CUDA_SHIM_H
#define FLEXPERT_CUDA_SHIM_H

#include <stdint.h>

// Calls into CUDA libraries resolved at run time whose C signatures pass a struct by value,
// which Swift cannot declare for a function pointer.

/// The bytes of an ncclUniqueId (NCCL_UNIQUE_ID_BYTES).
#define FLEXPERT_NCCL_UNIQUE_ID_BYTES 128

/// The bytes of a CUipcMemHandle (CU_IPC_HANDLE_SIZE).
#define FLEXPERT_CUDA_IPC_HANDLE_BYTES 64

/// Calls `function`, NCCL's ncclCommInitRank, with the unique id passed by value.
int32_t flexpert_nccl_comm_init_rank(const void *function, void **communicator, int32_t ranks, const void *uniqueID,
                                     int32_t rank);

/// Calls `function`, the driver's cuIpcOpenMemHandle_v2, with the handle passed by value.
int32_t flexpert_cuda_ipc_open_mem_handle(const void *function, uint64_t *address, const void *handle, uint32_t flags);

#endif
