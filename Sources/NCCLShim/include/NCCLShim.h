#ifndef FLEXPERT_NCCL_SHIM_H
#define FLEXPERT_NCCL_SHIM_H

#include <stdint.h>

/// The bytes of an ncclUniqueId (NCCL_UNIQUE_ID_BYTES).
#define FLEXPERT_NCCL_UNIQUE_ID_BYTES 128

/// Calls `function`, NCCL's ncclCommInitRank resolved at run time, with the unique id passed by
/// value as NCCL's C signature demands (Swift cannot declare a function taking a 128-byte struct).
int32_t flexpert_nccl_comm_init_rank(const void *function, void **communicator, int32_t ranks, const void *uniqueID,
                                     int32_t rank);

#endif
