#include "NCCLShim.h"

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
