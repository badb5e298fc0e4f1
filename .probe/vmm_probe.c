// Throwaway probe: does GPU memory shared with a peer process outlive that process?
// Legacy IPC (cuIpcGetMemHandle) against the virtual memory API (cuMemCreate, POSIX fd).
#include <cuda.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK(x) do { CUresult r_ = (x); if (r_ != CUDA_SUCCESS) { const char *s_ = "?"; cuGetErrorString(r_, &s_); \
    printf("[%d] %s -> %d %s\n", getpid(), #x, (int)r_, s_); fflush(stdout); return 1; } } while (0)

static int send_fd(int sock, int fd) {
    char byte = 0; struct iovec io = { &byte, 1 }; char control[CMSG_SPACE(sizeof(int))] = {0};
    struct msghdr msg = {0}; msg.msg_iov = &io; msg.msg_iovlen = 1; msg.msg_control = control; msg.msg_controllen = sizeof control;
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c->cmsg_level = SOL_SOCKET; c->cmsg_type = SCM_RIGHTS; c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(int));
    return sendmsg(sock, &msg, 0) == 1 ? 0 : -1;
}
static int recv_fd(int sock) {
    char byte; struct iovec io = { &byte, 1 }; char control[CMSG_SPACE(sizeof(int))];
    struct msghdr msg = {0}; msg.msg_iov = &io; msg.msg_iovlen = 1; msg.msg_control = control; msg.msg_controllen = sizeof control;
    if (recvmsg(sock, &msg, 0) != 1) return -1;
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg); int fd; memcpy(&fd, CMSG_DATA(c), sizeof(int)); return fd;
}

static int exporter(int sock, int vmm, size_t *size) {
    CUdevice dev; CUcontext ctx;
    CHECK(cuInit(0)); CHECK(cuDeviceGet(&dev, 0)); CHECK(cuDevicePrimaryCtxRetain(&ctx, dev)); CHECK(cuCtxSetCurrent(ctx));
    if (vmm) {
        CUmemAllocationProp prop = {0};
        prop.type = CU_MEM_ALLOCATION_TYPE_PINNED; prop.requestedHandleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
        prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE; prop.location.id = 0;
        size_t granularity; CHECK(cuMemGetAllocationGranularity(&granularity, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM));
        *size = (64 << 20) / granularity * granularity;
        CUmemGenericAllocationHandle handle; CHECK(cuMemCreate(&handle, *size, &prop, 0));
        CUdeviceptr ptr; CHECK(cuMemAddressReserve(&ptr, *size, 0, 0, 0)); CHECK(cuMemMap(ptr, *size, 0, handle, 0));
        CUmemAccessDesc access = {0}; access.location = prop.location; access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
        CHECK(cuMemSetAccess(ptr, *size, &access, 1)); CHECK(cuMemsetD8(ptr, 0x11, *size)); CHECK(cuCtxSynchronize());
        int fd; CHECK(cuMemExportToShareableHandle(&fd, handle, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0));
        if (send_fd(sock, fd)) { printf("send_fd failed\n"); return 1; }
    } else {
        *size = 64 << 20;
        CUdeviceptr ptr; CHECK(cuMemAlloc(&ptr, *size)); CHECK(cuMemsetD8(ptr, 0x11, *size)); CHECK(cuCtxSynchronize());
        CUipcMemHandle h; CHECK(cuIpcGetMemHandle(&h, ptr));
        if (write(sock, &h, sizeof h) != sizeof h) return 1;
    }
    char ok; if (read(sock, &ok, 1) != 1) return 1;
    kill(getpid(), SIGKILL);
    return 0;
}

static int importer(int sock, pid_t child, int vmm) {
    CUdevice dev; CUcontext ctx; size_t size = 0;
    CHECK(cuInit(0)); CHECK(cuDeviceGet(&dev, 0)); CHECK(cuDevicePrimaryCtxRetain(&ctx, dev)); CHECK(cuCtxSetCurrent(ctx));
    CUdeviceptr ptr;
    if (vmm) {
        int fd = recv_fd(sock); if (fd < 0) { printf("recv_fd failed\n"); return 1; }
        CUmemGenericAllocationHandle handle;
        CHECK(cuMemImportFromShareableHandle(&handle, (void *)(uintptr_t)fd, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR));
        close(fd);
        CUmemAllocationProp prop = {0};
        CHECK(cuMemGetAllocationPropertiesFromHandle(&prop, handle));
        size_t granularity; CHECK(cuMemGetAllocationGranularity(&granularity, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM));
        size = (64 << 20) / granularity * granularity;
        CHECK(cuMemAddressReserve(&ptr, size, 0, 0, 0)); CHECK(cuMemMap(ptr, size, 0, handle, 0));
        CUmemAccessDesc access = {0}; access.location.type = CU_MEM_LOCATION_TYPE_DEVICE; access.location.id = 0;
        access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE; CHECK(cuMemSetAccess(ptr, size, &access, 1));
    } else {
        CUipcMemHandle h; if (read(sock, &h, sizeof h) != sizeof h) return 1;
        size = 64 << 20;
        CHECK(cuIpcOpenMemHandle(&ptr, h, CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS));
    }
    unsigned char first = 0; CHECK(cuMemcpyDtoH(&first, ptr, 1));
    printf("[%s] imported, reads 0x%x; killing the exporter\n", vmm ? "vmm" : "ipc", first);
    char ok = 1; if (write(sock, &ok, 1) != 1) return 1;
    int status; waitpid(child, &status, 0); sleep(1);
    printf("[%s] exporter dead (signal %d); writing its memory\n", vmm ? "vmm" : "ipc", WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    fflush(stdout);
    CHECK(cuMemsetD8(ptr, 0x22, size)); CHECK(cuCtxSynchronize());
    unsigned char back = 0; CHECK(cuMemcpyDtoH(&back, ptr + size - 1, 1));
    printf("[%s] after the exporter died: wrote and read 0x%x: the memory outlived it\n", vmm ? "vmm" : "ipc", back);
    return 0;
}

int main(int argc, char **argv) {
    int vmm = argc > 1 && strcmp(argv[1], "vmm") == 0;
    int sv[2]; socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    pid_t child = fork();
    if (child == 0) { size_t size; close(sv[1]); return exporter(sv[0], vmm, &size); }
    close(sv[0]);
    return importer(sv[1], child, vmm);
}
