#if canImport(Glibc)
import Glibc
#endif

/// What goes wrong between processes: a deadline passed, a peer went away or refused, a message
/// broke the protocol, an address or a system call failed.
public enum TransportError: Error, CustomStringConvertible, Equatable {
    case timeout(String)
    case connectionClosed(String)
    case refused(String)
    case protocolViolation(String)
    case invalidAddress(String)
    case system(String, Int32)

    public var description: String {
        switch self {
        case .timeout(let operation): "\(operation) timed out"
        case .connectionClosed(let detail): "connection lost: \(detail)"
        case .refused(let reason): "refused: \(reason)"
        case .protocolViolation(let detail): "protocol violation: \(detail)"
        case .invalidAddress(let detail): detail
        case .system(let call, let code): "\(call) failed: \(String(cString: strerror(code)))"
        }
    }
}
