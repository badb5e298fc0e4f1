#include "CUDAShim.h"

#include <string.h>
#include <sys/socket.h>

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

/// Control-message space for one descriptor, aligned for its header.
typedef union {
    char bytes[CMSG_SPACE(sizeof(int))];
    struct cmsghdr header;
} OneDescriptor;

int32_t flexpert_send_fd(int32_t socket, int32_t fd) {
    char byte = 1;
    struct iovec data = {&byte, 1};
    OneDescriptor control;
    memset(&control, 0, sizeof control);
    struct msghdr message = {0};
    message.msg_iov = &data;
    message.msg_iovlen = 1;
    message.msg_control = control.bytes;
    message.msg_controllen = sizeof control.bytes;
    struct cmsghdr *header = CMSG_FIRSTHDR(&message);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(header), &fd, sizeof(int));
    return sendmsg(socket, &message, MSG_NOSIGNAL) == 1 ? 0 : -1;
}

int32_t flexpert_receive_fd(int32_t socket) {
    char byte;
    struct iovec data = {&byte, 1};
    OneDescriptor control;
    struct msghdr message = {0};
    message.msg_iov = &data;
    message.msg_iovlen = 1;
    message.msg_control = control.bytes;
    message.msg_controllen = sizeof control.bytes;
    if (recvmsg(socket, &message, MSG_CMSG_CLOEXEC) != 1 || (message.msg_flags & MSG_CTRUNC)) return -1;
    struct cmsghdr *header = CMSG_FIRSTHDR(&message);
    if (!header || header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS
        || header->cmsg_len != CMSG_LEN(sizeof(int))) return -1;
    int fd;
    memcpy(&fd, CMSG_DATA(header), sizeof(int));
    return fd;
}
