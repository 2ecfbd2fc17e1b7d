#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An error number reported by the operating system.
public struct Errno: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The C `errno` value.
    public let rawValue: CInt

    /// Creates an error number from its C value.
    public init(rawValue: CInt) { self.rawValue = rawValue }

    /// The error number the last failing system call left in the thread's `errno`.
    static var current: Errno { Errno(rawValue: errno) }

    static let interrupted = Errno(rawValue: EINTR)
    static let wouldBlock = Errno(rawValue: EAGAIN)
    static let noSuchProcess = Errno(rawValue: ESRCH)
    static let noChild = Errno(rawValue: ECHILD)
    static let brokenPipe = Errno(rawValue: EPIPE)
    static let notImplemented = Errno(rawValue: ENOSYS)

    /// The symbolic name and the C library's message, for example `ENOENT (No such file or directory)`.
    public var description: String {
        let message = String(cString: strerror(rawValue))
        if let name = Errno.symbolicNames[rawValue] { return "\(name) (\(message))" }
        return "errno \(rawValue) (\(message))"
    }

    private static let symbolicNames: [CInt: String] = [
        EPERM: "EPERM", ENOENT: "ENOENT", ESRCH: "ESRCH", EINTR: "EINTR", EIO: "EIO",
        E2BIG: "E2BIG", ENOEXEC: "ENOEXEC", EBADF: "EBADF", ECHILD: "ECHILD", EAGAIN: "EAGAIN",
        ENOMEM: "ENOMEM", EACCES: "EACCES", EFAULT: "EFAULT", EBUSY: "EBUSY", EEXIST: "EEXIST",
        ENOTDIR: "ENOTDIR", EISDIR: "EISDIR", EINVAL: "EINVAL", ENFILE: "ENFILE", EMFILE: "EMFILE",
        ETXTBSY: "ETXTBSY", ENOSPC: "ENOSPC", EPIPE: "EPIPE", ENAMETOOLONG: "ENAMETOOLONG",
        ENOSYS: "ENOSYS", ELOOP: "ELOOP",
    ]
}

/// A failed system call: which call, and the error number it returned.
struct SystemCallError: Error, CustomStringConvertible {
    var call: String
    var errno: Errno
    var description: String { "\(call) failed: \(errno)" }
}

/// Runs a C call that returns -1 and sets `errno` on failure, retrying while it is interrupted
/// by a signal, and throws the call's name with the error number otherwise.
@inline(__always)
func systemCall<Result: FixedWidthInteger>(
    _ name: @autoclosure () -> String,
    _ body: () -> Result
) throws(SystemCallError) -> Result {
    while true {
        let result = body()
        if result != -1 { return result }
        let error = Errno.current
        if error == .interrupted { continue }
        throw SystemCallError(call: name(), errno: error)
    }
}
