#include "CUDAShim.h"

#include <string.h>

typedef struct {
    char internal[FLEXPERT_NCCL_UNIQUE_ID_BYTES];
} UniqueID;

typedef int32_t (*CommInitRank)(void **, int32_t, UniqueID, int32_t);

int32_t flexpert_nccl_comm_init_rank(const void *function, void **communicator, int32_t ranks, const void *uniqueID,
                                     int32_t rank) {
    UniqueID id;
    memcpy(&id, uniqueID, sizeof id);
    return ((CommInitRank)function)(communicator, ranks, id, rank);
}

typedef struct {
    char reserved[FLEXPERT_CUDA_IPC_HANDLE_BYTES];
} IPCMemHandle;

typedef int32_t (*IPCOpenMemHandle)(uint64_t *, IPCMemHandle, uint32_t);

int32_t flexpert_cuda_ipc_open_mem_handle(const void *function, uint64_t *address, const void *handle, uint32_t flags) {
    IPCMemHandle value;
    memcpy(&value, handle, sizeof value);
    return ((IPCOpenMemHandle)function)(address, value, flags);
}
