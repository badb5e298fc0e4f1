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

/// The driver's virtual memory structs (cuda.h's CUmemLocation, CUmemAllocationProp and
/// CUmemAccessDesc), laid out as the driver reads them.
typedef struct {
    int32_t type;
    int32_t id;
} FlexpertMemLocation;

typedef struct {
    int32_t type;
    int32_t requestedHandleTypes;
    FlexpertMemLocation location;
    void *win32HandleMetaData;
    uint8_t compressionType;
    uint8_t gpuDirectRDMACapable;
    uint16_t usage;
    uint8_t reserved[4];
} FlexpertMemAllocationProp;

typedef struct {
    FlexpertMemLocation location;
    int32_t flags;
} FlexpertMemAccessDesc;

/// Sends `fd` over the Unix socket `socket` (SCM_RIGHTS, with one byte); 0 or -1 (errno set).
int32_t flexpert_send_fd(int32_t socket, int32_t fd);

/// A descriptor received over the Unix socket `socket`, or -1 (errno set).
int32_t flexpert_receive_fd(int32_t socket);

#endif
