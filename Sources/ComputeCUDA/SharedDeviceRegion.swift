internal import CUDAShim
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Device memory a rank shares with its peers that outlives any one of them: an allocation of
/// the driver's virtual memory API (`cuMemCreate`), of which every mapping holds a reference, so
/// a peer that dies takes only its own reference along. (Memory shared through legacy CUDA IPC is
/// freed with the process that exported it, and a survivor's kernel still writing into it then
/// faults the survivor's whole context.) The owner hands the allocation out as a POSIX file
/// descriptor through a ``DescriptorServer``; a peer maps it with ``map(driver:descriptor:device:bytes:)``.
///
/// Owned like the exchange that holds it: made and released on the step loop's thread, or on a
/// preparation's, never both at once.
final class SharedDeviceRegion {
    let address: UInt64
    /// The mapped size: the requested bytes rounded up to the allocation granularity.
    let bytes: Int
    private let handle: UInt64
    private let driver: CUDADriver

    private static let pinned: Int32 = 1, posixDescriptor: Int32 = 1, deviceLocation: Int32 = 1, readWrite: Int32 = 3

    private static func properties(device: Int) -> FlexpertMemAllocationProp {
        var properties = FlexpertMemAllocationProp()
        properties.type = pinned
        properties.requestedHandleTypes = posixDescriptor
        properties.location = FlexpertMemLocation(type: deviceLocation, id: Int32(device))
        return properties
    }

    /// At least `bytes` of zeroed memory on `device`, exportable as a descriptor. Throws where
    /// the driver cannot (the caller then shares through legacy IPC).
    static func allocate(driver: CUDADriver, device: Int, bytes: Int) throws -> SharedDeviceRegion {
        var properties = Self.properties(device: device)
        var granularity = 0
        try driver.check(driver.cuMemGetAllocationGranularity(&granularity, &properties, 0), "cuMemGetAllocationGranularity")
        let rounded = (bytes + granularity - 1) / granularity * granularity
        var handle: UInt64 = 0
        try driver.check(driver.cuMemCreate(&handle, rounded, &properties, 0), "cuMemCreate(\(rounded) bytes)")
        let region: SharedDeviceRegion
        do {
            region = try SharedDeviceRegion(driver: driver, handle: handle, device: device, bytes: rounded)
        } catch {
            _ = driver.cuMemRelease(handle)
            throw error
        }
        // From here the region owns the handle (its deinit releases it).
        try driver.check(driver.cuMemsetD8(region.address, 0, rounded), "cuMemsetD8")
        return region
    }

    /// Maps the allocation a peer exported as `descriptor` (which the caller still closes), `bytes`
    /// long, for `device`'s access.
    static func map(driver: CUDADriver, descriptor: Int32, device: Int, bytes: Int) throws -> SharedDeviceRegion {
        var handle: UInt64 = 0
        try driver.check(driver.cuMemImportFromShareableHandle(&handle, UnsafeMutableRawPointer(bitPattern: Int(descriptor)), posixDescriptor),
                         "cuMemImportFromShareableHandle")
        do {
            return try SharedDeviceRegion(driver: driver, handle: handle, device: device, bytes: bytes)
        } catch {
            _ = driver.cuMemRelease(handle)
            throw error
        }
    }

    /// Reserves an address range, maps `handle` there and gives `device` read and write access;
    /// on failure undoes what it did (the handle stays the caller's).
    private init(driver: CUDADriver, handle: UInt64, device: Int, bytes: Int) throws {
        var address: UInt64 = 0
        try driver.check(driver.cuMemAddressReserve(&address, bytes, 0, 0, 0), "cuMemAddressReserve")
        guard driver.cuMemMap(address, bytes, 0, handle, 0) == 0 else {
            _ = driver.cuMemAddressFree(address, bytes)
            throw PeerMemoryError.unavailable("cuMemMap of \(bytes) bytes failed")
        }
        var access = FlexpertMemAccessDesc(location: FlexpertMemLocation(type: Self.deviceLocation, id: Int32(device)), flags: Self.readWrite)
        let granted = driver.cuMemSetAccess(address, bytes, &access, 1)
        guard granted == 0 else {
            _ = driver.cuMemUnmap(address, bytes)
            _ = driver.cuMemAddressFree(address, bytes)
            try driver.check(granted, "cuMemSetAccess")
            throw PeerMemoryError.unavailable("cuMemSetAccess failed")
        }
        self.address = address
        self.bytes = bytes
        self.handle = handle
        self.driver = driver
    }

    deinit {
        _ = driver.cuMemUnmap(address, bytes)
        _ = driver.cuMemAddressFree(address, bytes)
        _ = driver.cuMemRelease(handle)
    }

    /// A new descriptor of the allocation, the caller's to close.
    func exportDescriptor() throws -> Int32 {
        var descriptor: Int32 = -1
        try driver.check(driver.cuMemExportToShareableHandle(&descriptor, handle, Self.posixDescriptor, 0), "cuMemExportToShareableHandle")
        return descriptor
    }
}

/// Hands one descriptor to every peer that presents the secret, over an abstract Unix socket (of
/// this host's network namespace: peer memory is for ranks of one host), from a thread of its own
/// until ``close()``. The secret travels in the peer card, through the cluster's authenticated
/// store, so only the group's ranks can take the memory.
final class DescriptorServer: Sendable {
    /// The socket's abstract name (without the leading NUL).
    let name: String
    let secret: [UInt8]
    private let listener: Int32
    private let descriptor: Int32
    private let closed = Atomic(false)
    private let finished = DispatchSemaphore(value: 0)

    static let secretBytes = 32

    /// Serves a duplicate of `descriptor` (the caller keeps its own).
    init(descriptor: Int32) throws {
        var secret = [UInt8](repeating: 0, count: Self.secretBytes)
        for index in secret.indices { secret[index] = UInt8.random(in: 0 ... .max) }
        self.secret = secret
        name = "flexpert-region-\(getpid())-\(UInt64.random(in: 0 ... .max))"
        let listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard listener >= 0 else { throw PeerMemoryError.unavailable("socket(AF_UNIX) failed: errno \(errno)") }
        var (address, length) = Self.address(name)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, length) }
        }
        guard bound == 0, listen(listener, 64) == 0 else {
            let error = errno
            _ = Glibc.close(listener)
            throw PeerMemoryError.unavailable("binding the region's socket failed: errno \(error)")
        }
        let duplicate = dup(descriptor)
        guard duplicate >= 0 else {
            _ = Glibc.close(listener)
            throw PeerMemoryError.unavailable("dup failed: errno \(errno)")
        }
        self.listener = listener
        self.descriptor = duplicate
        let thread = Thread { [self] in serve() }
        thread.name = "flexpert-region-server"
        thread.start()
    }

    deinit { close() }

    /// Stops serving (the peers have their descriptors) and closes the server's own.
    func close() {
        guard !closed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        _ = shutdown(listener, Int32(SHUT_RDWR))
        finished.wait()
        _ = Glibc.close(listener)
        _ = Glibc.close(descriptor)
    }

    private func serve() {
        defer { finished.signal() }
        while !closed.load(ordering: .acquiring) {
            var entry = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
            guard poll(&entry, 1, 100) > 0 else { continue }
            let connection = accept(listener, nil, nil)
            guard connection >= 0 else { continue }
            defer { _ = Glibc.close(connection) }
            var timeout = timeval(tv_sec: 2, tv_usec: 0)
            setsockopt(connection, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            var presented = [UInt8](repeating: 0, count: Self.secretBytes)
            var offset = 0
            while offset < presented.count {
                let wanted = Self.secretBytes - offset
                let count = presented.withUnsafeMutableBytes { recv(connection, $0.baseAddress! + offset, wanted, 0) }
                guard count > 0 else { break }
                offset += count
            }
            // Compared in full, whatever the first difference, so the time says nothing of the secret.
            guard offset == presented.count, zip(presented, secret).reduce(0, { $0 | ($1.0 ^ $1.1) }) == 0 else { continue }
            _ = flexpert_send_fd(connection, descriptor)
        }
    }

    /// The descriptor `name` serves, for `secret`; the caller's to close.
    static func fetch(name: String, secret: [UInt8], timeout: Duration) throws -> Int32 {
        let connection = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard connection >= 0 else { throw PeerMemoryError.unavailable("socket(AF_UNIX) failed: errno \(errno)") }
        defer { _ = Glibc.close(connection) }
        var tv = timeval(tv_sec: Int(timeout.components.seconds), tv_usec: 0)
        setsockopt(connection, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(connection, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var (address, length) = Self.address(name)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(connection, $0, length) }
        }
        guard connected == 0 else { throw PeerMemoryError.unavailable("the peer's region socket refused: errno \(errno)") }
        let sent = secret.withUnsafeBytes { send(connection, $0.baseAddress!, $0.count, Int32(MSG_NOSIGNAL)) }
        guard sent == secret.count else { throw PeerMemoryError.unavailable("sending to the peer's region socket failed: errno \(errno)") }
        let descriptor = flexpert_receive_fd(connection)
        guard descriptor >= 0 else { throw PeerMemoryError.unavailable("the peer sent no region (errno \(errno))") }
        return descriptor
    }

    private static func address(_ name: String) -> (sockaddr_un, socklen_t) {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(name.utf8.prefix(100))
        withUnsafeMutableBytes(of: &address.sun_path) { path in
            path[0] = 0
            for (index, byte) in bytes.enumerated() { path[index + 1] = byte }
        }
        return (address, socklen_t(MemoryLayout<sa_family_t>.size + 1 + bytes.count))
    }
}
