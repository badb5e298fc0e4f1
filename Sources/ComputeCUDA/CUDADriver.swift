internal import CUDAShim
/// The slice of the CUDA driver API Flexpert uses, resolved from `libcuda.so.1` at run time.
/// Names are the `_v2` entry points that the driver's headers map the plain names to.
/// Unchecked Sendable: C function pointers, resolved once and never written again.
final class CUDADriver: @unchecked Sendable {
    typealias Result = Int32
    typealias DevicePointer = UInt64

    let library: DynamicLibrary
    let cuInit: @convention(c) (UInt32) -> Result
    let cuDeviceGetCount: @convention(c) (UnsafeMutablePointer<Int32>) -> Result
    let cuDeviceGet: @convention(c) (UnsafeMutablePointer<Int32>, Int32) -> Result
    let cuDeviceGetName: @convention(c) (UnsafeMutablePointer<CChar>, Int32, Int32) -> Result
    let cuDeviceGetAttribute: @convention(c) (UnsafeMutablePointer<Int32>, Int32, Int32) -> Result
    let cuDeviceTotalMem: @convention(c) (UnsafeMutablePointer<Int>, Int32) -> Result
    let cuDevicePrimaryCtxRetain: @convention(c) (UnsafeMutablePointer<OpaquePointer?>, Int32) -> Result
    let cuCtxSetCurrent: @convention(c) (OpaquePointer?) -> Result
    let cuCtxSynchronize: @convention(c) () -> Result
    let cuMemAlloc: @convention(c) (UnsafeMutablePointer<DevicePointer>, Int) -> Result
    let cuMemFree: @convention(c) (DevicePointer) -> Result
    let cuMemGetInfo: @convention(c) (UnsafeMutablePointer<Int>, UnsafeMutablePointer<Int>) -> Result
    let cuMemsetD8: @convention(c) (DevicePointer, UInt8, Int) -> Result
    /// CUDA IPC, for the peer exchange. cuIpcOpenMemHandle_v2 takes the 64-byte handle by value,
    /// so it is called through `flexpert_cuda_ipc_open_mem_handle`.
    let cuIpcGetMemHandle: @convention(c) (UnsafeMutableRawPointer, DevicePointer) -> Result
    let cuIpcOpenMemHandle: UnsafeRawPointer
    let cuIpcCloseMemHandle: @convention(c) (DevicePointer) -> Result
    let cuDeviceCanAccessPeer: @convention(c) (UnsafeMutablePointer<Int32>, Int32, Int32) -> Result
    /// The virtual memory API, for peer regions that outlive their exporter (``SharedDeviceRegion``).
    let cuMemGetAllocationGranularity: @convention(c) (UnsafeMutablePointer<Int>, UnsafePointer<FlexpertMemAllocationProp>, Int32) -> Result
    let cuMemCreate: @convention(c) (UnsafeMutablePointer<UInt64>, Int, UnsafePointer<FlexpertMemAllocationProp>, UInt64) -> Result
    let cuMemExportToShareableHandle: @convention(c) (UnsafeMutableRawPointer, UInt64, Int32, UInt64) -> Result
    let cuMemImportFromShareableHandle: @convention(c) (UnsafeMutablePointer<UInt64>, UnsafeMutableRawPointer?, Int32) -> Result
    let cuMemAddressReserve: @convention(c) (UnsafeMutablePointer<DevicePointer>, Int, Int, DevicePointer, UInt64) -> Result
    let cuMemAddressFree: @convention(c) (DevicePointer, Int) -> Result
    let cuMemMap: @convention(c) (DevicePointer, Int, Int, UInt64, UInt64) -> Result
    let cuMemUnmap: @convention(c) (DevicePointer, Int) -> Result
    let cuMemSetAccess: @convention(c) (DevicePointer, Int, UnsafePointer<FlexpertMemAccessDesc>, Int) -> Result
    let cuMemRelease: @convention(c) (UInt64) -> Result
    let cuModuleLoadData: @convention(c) (UnsafeMutablePointer<OpaquePointer?>, UnsafeRawPointer) -> Result
    let cuModuleGetFunction: @convention(c) (UnsafeMutablePointer<OpaquePointer?>, OpaquePointer?, UnsafePointer<CChar>) -> Result
    let cuLaunchKernel: @convention(c) (OpaquePointer?, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, OpaquePointer?,
                                        UnsafeMutablePointer<UnsafeMutableRawPointer?>?, UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> Result
    let cuGetErrorString: @convention(c) (Result, UnsafeMutablePointer<UnsafePointer<CChar>?>) -> Result
    let cuDriverGetVersion: @convention(c) (UnsafeMutablePointer<Int32>) -> Result
    let cuStreamCreate: @convention(c) (UnsafeMutablePointer<OpaquePointer?>, UInt32) -> Result
    let cuStreamSynchronize: @convention(c) (OpaquePointer?) -> Result
    let cuStreamDestroy: @convention(c) (OpaquePointer?) -> Result
    let cuStreamWaitEvent: @convention(c) (OpaquePointer?, OpaquePointer?, UInt32) -> Result
    let cuMemcpyHtoDAsync: @convention(c) (DevicePointer, UnsafeRawPointer, Int, OpaquePointer?) -> Result
    let cuMemcpyDtoHAsync: @convention(c) (UnsafeMutableRawPointer, DevicePointer, Int, OpaquePointer?) -> Result
    let cuMemcpyDtoDAsync: @convention(c) (DevicePointer, DevicePointer, Int, OpaquePointer?) -> Result
    let cuMemHostAlloc: @convention(c) (UnsafeMutablePointer<UnsafeMutableRawPointer?>, Int, UInt32) -> Result
    let cuFuncSetAttribute: @convention(c) (OpaquePointer?, Int32, Int32) -> Result
    let cuStreamBeginCapture: @convention(c) (OpaquePointer?, Int32) -> Result
    let cuStreamEndCapture: @convention(c) (OpaquePointer?, UnsafeMutablePointer<OpaquePointer?>) -> Result
    let cuGraphInstantiate: @convention(c) (UnsafeMutablePointer<OpaquePointer?>, OpaquePointer?, UInt64) -> Result
    let cuGraphLaunch: @convention(c) (OpaquePointer?, OpaquePointer?) -> Result
    let cuGraphDestroy: @convention(c) (OpaquePointer?) -> Result
    let cuGraphExecDestroy: @convention(c) (OpaquePointer?) -> Result
    let cuEventCreate: @convention(c) (UnsafeMutablePointer<OpaquePointer?>, UInt32) -> Result
    let cuEventDestroy: @convention(c) (OpaquePointer?) -> Result
    let cuEventRecord: @convention(c) (OpaquePointer?, OpaquePointer?) -> Result
    let cuEventRecordWithFlags: @convention(c) (OpaquePointer?, OpaquePointer?, UInt32) -> Result
    let cuEventSynchronize: @convention(c) (OpaquePointer?) -> Result
    let cuEventQuery: @convention(c) (OpaquePointer?) -> Result
    let cuEventElapsedTime: @convention(c) (UnsafeMutablePointer<Float>, OpaquePointer?, OpaquePointer?) -> Result

    init(source: CUDALibrarySource = .system) throws {
        library = try DynamicLibrary.open(library: "the CUDA driver (libcuda)", names: ["libcuda.so.1", "libcuda.so"], from: source)
        cuInit = try library.symbol("cuInit", as: type(of: cuInit))
        cuDeviceGetCount = try library.symbol("cuDeviceGetCount", as: type(of: cuDeviceGetCount))
        cuDeviceGet = try library.symbol("cuDeviceGet", as: type(of: cuDeviceGet))
        cuDeviceGetName = try library.symbol("cuDeviceGetName", as: type(of: cuDeviceGetName))
        cuDeviceGetAttribute = try library.symbol("cuDeviceGetAttribute", as: type(of: cuDeviceGetAttribute))
        cuDeviceTotalMem = try library.symbol("cuDeviceTotalMem_v2", as: type(of: cuDeviceTotalMem))
        cuDevicePrimaryCtxRetain = try library.symbol("cuDevicePrimaryCtxRetain", as: type(of: cuDevicePrimaryCtxRetain))
        cuCtxSetCurrent = try library.symbol("cuCtxSetCurrent", as: type(of: cuCtxSetCurrent))
        cuCtxSynchronize = try library.symbol("cuCtxSynchronize", as: type(of: cuCtxSynchronize))
        cuMemAlloc = try library.symbol("cuMemAlloc_v2", as: type(of: cuMemAlloc))
        cuMemFree = try library.symbol("cuMemFree_v2", as: type(of: cuMemFree))
        cuMemGetInfo = try library.symbol("cuMemGetInfo_v2", as: type(of: cuMemGetInfo))
        cuMemsetD8 = try library.symbol("cuMemsetD8_v2", as: type(of: cuMemsetD8))
        cuIpcGetMemHandle = try library.symbol("cuIpcGetMemHandle", as: type(of: cuIpcGetMemHandle))
        cuIpcOpenMemHandle = try library.symbol("cuIpcOpenMemHandle_v2", as: UnsafeRawPointer.self)
        cuIpcCloseMemHandle = try library.symbol("cuIpcCloseMemHandle", as: type(of: cuIpcCloseMemHandle))
        cuDeviceCanAccessPeer = try library.symbol("cuDeviceCanAccessPeer", as: type(of: cuDeviceCanAccessPeer))
        cuMemGetAllocationGranularity = try library.symbol("cuMemGetAllocationGranularity", as: type(of: cuMemGetAllocationGranularity))
        cuMemCreate = try library.symbol("cuMemCreate", as: type(of: cuMemCreate))
        cuMemExportToShareableHandle = try library.symbol("cuMemExportToShareableHandle", as: type(of: cuMemExportToShareableHandle))
        cuMemImportFromShareableHandle = try library.symbol("cuMemImportFromShareableHandle", as: type(of: cuMemImportFromShareableHandle))
        cuMemAddressReserve = try library.symbol("cuMemAddressReserve", as: type(of: cuMemAddressReserve))
        cuMemAddressFree = try library.symbol("cuMemAddressFree", as: type(of: cuMemAddressFree))
        cuMemMap = try library.symbol("cuMemMap", as: type(of: cuMemMap))
        cuMemUnmap = try library.symbol("cuMemUnmap", as: type(of: cuMemUnmap))
        cuMemSetAccess = try library.symbol("cuMemSetAccess", as: type(of: cuMemSetAccess))
        cuMemRelease = try library.symbol("cuMemRelease", as: type(of: cuMemRelease))
        cuModuleLoadData = try library.symbol("cuModuleLoadData", as: type(of: cuModuleLoadData))
        cuModuleGetFunction = try library.symbol("cuModuleGetFunction", as: type(of: cuModuleGetFunction))
        cuLaunchKernel = try library.symbol("cuLaunchKernel", as: type(of: cuLaunchKernel))
        cuGetErrorString = try library.symbol("cuGetErrorString", as: type(of: cuGetErrorString))
        cuDriverGetVersion = try library.symbol("cuDriverGetVersion", as: type(of: cuDriverGetVersion))
        cuStreamCreate = try library.symbol("cuStreamCreate", as: type(of: cuStreamCreate))
        cuStreamSynchronize = try library.symbol("cuStreamSynchronize", as: type(of: cuStreamSynchronize))
        cuStreamDestroy = try library.symbol("cuStreamDestroy_v2", as: type(of: cuStreamDestroy))
        cuStreamWaitEvent = try library.symbol("cuStreamWaitEvent", as: type(of: cuStreamWaitEvent))
        cuMemcpyHtoDAsync = try library.symbol("cuMemcpyHtoDAsync_v2", as: type(of: cuMemcpyHtoDAsync))
        cuMemcpyDtoHAsync = try library.symbol("cuMemcpyDtoHAsync_v2", as: type(of: cuMemcpyDtoHAsync))
        cuMemcpyDtoDAsync = try library.symbol("cuMemcpyDtoDAsync_v2", as: type(of: cuMemcpyDtoDAsync))
        cuMemHostAlloc = try library.symbol("cuMemHostAlloc", as: type(of: cuMemHostAlloc))
        cuFuncSetAttribute = try library.symbol("cuFuncSetAttribute", as: type(of: cuFuncSetAttribute))
        cuStreamBeginCapture = try library.symbol("cuStreamBeginCapture_v2", as: type(of: cuStreamBeginCapture))
        cuStreamEndCapture = try library.symbol("cuStreamEndCapture", as: type(of: cuStreamEndCapture))
        cuGraphInstantiate = try library.symbol("cuGraphInstantiateWithFlags", as: type(of: cuGraphInstantiate))
        cuGraphLaunch = try library.symbol("cuGraphLaunch", as: type(of: cuGraphLaunch))
        cuGraphDestroy = try library.symbol("cuGraphDestroy", as: type(of: cuGraphDestroy))
        cuGraphExecDestroy = try library.symbol("cuGraphExecDestroy", as: type(of: cuGraphExecDestroy))
        cuEventCreate = try library.symbol("cuEventCreate", as: type(of: cuEventCreate))
        cuEventDestroy = try library.symbol("cuEventDestroy_v2", as: type(of: cuEventDestroy))
        cuEventRecord = try library.symbol("cuEventRecord", as: type(of: cuEventRecord))
        cuEventRecordWithFlags = try library.symbol("cuEventRecordWithFlags", as: type(of: cuEventRecordWithFlags))
        cuEventSynchronize = try library.symbol("cuEventSynchronize", as: type(of: cuEventSynchronize))
        cuEventQuery = try library.symbol("cuEventQuery", as: type(of: cuEventQuery))
        cuEventElapsedTime = try library.symbol("cuEventElapsedTime", as: type(of: cuEventElapsedTime))
    }

    /// The one place a `CUresult` is checked: failures carry the call and the driver's message.
    @inline(__always)
    func check(_ result: Result, _ call: @autoclosure () -> String) throws {
        guard result != 0 else { return }
        var message: UnsafePointer<CChar>?
        _ = cuGetErrorString(result, &message)
        throw CUDAError.driver(call: call(), code: result, message: message.map { String(cString: $0) } ?? "unknown error")
    }
}

/// NVRTC, resolved from `libnvrtc` at run time.
/// Unchecked Sendable: C function pointers, resolved once and never written again.
final class NVRTCLibrary: @unchecked Sendable {
    typealias Result = Int32

    let library: DynamicLibrary
    let nvrtcVersion: @convention(c) (UnsafeMutablePointer<Int32>, UnsafeMutablePointer<Int32>) -> Result
    let nvrtcCreateProgram: @convention(c) (UnsafeMutablePointer<OpaquePointer?>, UnsafePointer<CChar>, UnsafePointer<CChar>?, Int32,
                                            UnsafePointer<UnsafePointer<CChar>?>?, UnsafePointer<UnsafePointer<CChar>?>?) -> Result
    let nvrtcCompileProgram: @convention(c) (OpaquePointer?, Int32, UnsafePointer<UnsafePointer<CChar>?>?) -> Result
    let nvrtcGetProgramLogSize: @convention(c) (OpaquePointer?, UnsafeMutablePointer<Int>) -> Result
    let nvrtcGetProgramLog: @convention(c) (OpaquePointer?, UnsafeMutablePointer<CChar>) -> Result
    let nvrtcGetCUBINSize: @convention(c) (OpaquePointer?, UnsafeMutablePointer<Int>) -> Result
    let nvrtcGetCUBIN: @convention(c) (OpaquePointer?, UnsafeMutablePointer<CChar>) -> Result
    let nvrtcDestroyProgram: @convention(c) (UnsafeMutablePointer<OpaquePointer?>) -> Result

    init(source: CUDALibrarySource = .system) throws {
        library = try DynamicLibrary.open(
            library: "NVRTC (libnvrtc)",
            names: ["libnvrtc.so", "libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2"], from: source)
        nvrtcVersion = try library.symbol("nvrtcVersion", as: type(of: nvrtcVersion))
        nvrtcCreateProgram = try library.symbol("nvrtcCreateProgram", as: type(of: nvrtcCreateProgram))
        nvrtcCompileProgram = try library.symbol("nvrtcCompileProgram", as: type(of: nvrtcCompileProgram))
        nvrtcGetProgramLogSize = try library.symbol("nvrtcGetProgramLogSize", as: type(of: nvrtcGetProgramLogSize))
        nvrtcGetProgramLog = try library.symbol("nvrtcGetProgramLog", as: type(of: nvrtcGetProgramLog))
        nvrtcGetCUBINSize = try library.symbol("nvrtcGetCUBINSize", as: type(of: nvrtcGetCUBINSize))
        nvrtcGetCUBIN = try library.symbol("nvrtcGetCUBIN", as: type(of: nvrtcGetCUBIN))
        nvrtcDestroyProgram = try library.symbol("nvrtcDestroyProgram", as: type(of: nvrtcDestroyProgram))
    }
}
