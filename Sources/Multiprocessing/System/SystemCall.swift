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
    static let invalidArgument = Errno(rawValue: EINVAL)
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

/// What a system call on a descriptor that may not be ready did.
enum SystemCallOutcome<Value> {
    /// The call completed with this result.
    case completed(Value)
    /// The descriptor is non-blocking and not ready (`EAGAIN`): poll before trying again.
    case wouldBlock
}

extension Errno {
    static let badDescriptor = Errno(rawValue: EBADF)
    static let badAddress = Errno(rawValue: EFAULT)

    /// Error numbers that only a bug in this library can cause: a descriptor it closed or never
    /// had, a pointer it got wrong. Going on would act on someone else's descriptor.
    var meansBugInCaller: Bool { self == .badDescriptor || self == .badAddress }

    /// Whether the error is a limit of the machine rather than a fault of the caller: no more
    /// processes or threads (`EAGAIN` from a start), descriptors (`EMFILE`, `ENFILE`) or
    /// memory (`ENOMEM`).
    var meansResourceLimit: Bool { [EAGAIN, EMFILE, ENFILE, ENOMEM].contains(rawValue) }
}

/// The one place the library turns a failed C call into Swift: a call interrupted by a signal
/// is retried, `EAGAIN` comes back as ``SystemCallOutcome/wouldBlock``, an error number that
/// means a bug here (`EBADF`, `EFAULT`) traps, and any other is thrown with the call's name.
///
/// - Parameters:
///   - name: The call, as error messages name it (`"read"`, `"fcntl(F_SETFL)"`).
///   - body: The C call; it returns -1 and sets `errno` on failure.
@inline(__always)
func trySystemCall<Result: FixedWidthInteger>(
    _ name: @autoclosure () -> String,
    _ body: () -> Result
) throws(SystemCallError) -> SystemCallOutcome<Result> {
    while true {
        let result = body()
        if result != -1 { return .completed(result) }
        let error = Errno.current
        if error == .interrupted { continue }
        if error == .wouldBlock { return .wouldBlock }
        throw failedCall(name(), error)
    }
}

/// ``trySystemCall(_:_:)`` for a call that never waits (or whose `EAGAIN` is a failure like
/// any other, as `fork` limits are): would-block is thrown too.
@inline(__always)
func systemCall<Result: FixedWidthInteger>(
    _ name: @autoclosure () -> String,
    _ body: () -> Result
) throws(SystemCallError) -> Result {
    switch try trySystemCall(name(), body) {
    case .completed(let result): return result
    case .wouldBlock: throw failedCall(name(), .wouldBlock)
    }
}

/// For the POSIX calls that return an error number instead of setting `errno`
/// (`posix_spawn`, `pthread_create`): the same rules as ``trySystemCall(_:_:)``, with no retry.
@inline(__always)
func systemCallReturningError(_ name: @autoclosure () -> String, _ body: () -> CInt) throws(SystemCallError) {
    let code = body()
    if code != 0 { throw failedCall(name(), Errno(rawValue: code)) }
}

/// The error to throw for `error`, after trapping on those that mean a bug in this library.
private func failedCall(_ name: String, _ error: Errno) -> SystemCallError {
    if error.meansBugInCaller {
        preconditionFailure("multiprocessing: \(name) failed with \(error), a bug in this library")
    }
    return SystemCallError(call: name, errno: error)
}
