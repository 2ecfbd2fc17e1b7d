import CMultiprocessingShims

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How a process ended.
public enum TerminationStatus: Hashable, Sendable, CustomStringConvertible {
    /// The process called `exit` (or returned from `main`) with this status.
    case exited(Int32)
    /// The process was ended by this signal (for example 9 for `SIGKILL`, 6 for `SIGABRT`).
    case signaled(Int32)

    /// The signal's name, such as `"SIGKILL"`, when the process was ended by a signal.
    public var signalName: String? {
        guard case .signaled(let signal) = self else { return nil }
        return Self.name(ofSignal: signal)
    }

    /// A description such as `exit status 3` or `signal SIGSEGV (11)`.
    public var description: String {
        switch self {
        case .exited(let status): return "exit status \(status)"
        case .signaled(let signal): return "signal \(Self.name(ofSignal: signal)) (\(signal))"
        }
    }

    static func name(ofSignal signal: Int32) -> String {
        guard let abbreviation = mp_signal_abbreviation(signal) else { return "signal \(signal)" }
        return "SIG" + String(cString: abbreviation)
    }

    init(waitStatus: CInt) {
        if mp_wifsignaled(waitStatus) != 0 {
            self = .signaled(mp_wtermsig(waitStatus))
        } else {
            self = .exited(mp_wexitstatus(waitStatus))
        }
    }
}

/// A child process this library started and has not reaped yet.
struct ChildProcess: ~Copyable {
    let pid: pid_t
    /// A pidfd that becomes readable when the process exits (Linux 5.3+); nil where unavailable,
    /// in which case the end of the worker's output pipes stands in for it.
    private(set) var exitDescriptor: FileDescriptor?

    /// Reaps the process if it has exited. Returns nil while it is still running.
    ///
    /// The corresponding C function is `waitpid(2)` with `WNOHANG`.
    func reapIfExited() throws(SystemCallError) -> TerminationStatus? {
        var status: CInt = 0
        let result = try systemCall("waitpid") { waitpid(pid, &status, WNOHANG) }
        return result == pid ? TerminationStatus(waitStatus: status) : nil
    }

    /// Waits for the process to exit and reaps it. Only for processes known to be dying.
    func reap() throws(SystemCallError) -> TerminationStatus {
        var status: CInt = 0
        _ = try systemCall("waitpid") { waitpid(pid, &status, 0) }
        return TerminationStatus(waitStatus: status)
    }

    /// Sends `signal` to the child's whole process group (workers lead their own group, so this
    /// also reaches any process a job started). A group that is already gone is not an error.
    func signalGroup(_ signal: CInt) {
        if kill(-pid, signal) != 0 && Errno.current == .noSuchProcess {
            _ = kill(pid, signal)
        }
    }

    /// SIGKILLs whatever is left in the child's process group after the child itself has
    /// been reaped: processes its job started that ignored the termination signal. No
    /// fallback to the pid alone, which may belong to someone else by now.
    func killRemainingGroupMembers() {
        ThisProcess.killProcessGroup(pid)
    }

    mutating func closeExitDescriptor() {
        exitDescriptor.take()?.close()
    }
}

/// A process's resident memory in bytes, from `/proc/PID/statm` (Linux); nil elsewhere or if
/// it cannot be read.
func residentMemory(of pid: pid_t) -> Int? {
    #if os(Linux)
    let descriptor = open("/proc/\(pid)/statm", O_RDONLY | O_CLOEXEC)
    guard descriptor >= 0 else { return nil }
    defer { close(descriptor) }
    var buffer = [UInt8](repeating: 0, count: 128)
    let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
    guard count > 0 else { return nil }
    // "size resident shared text lib data dt", in pages.
    let fields = String(decoding: buffer[0..<count], as: UTF8.self).split(separator: " ")
    guard fields.count > 1, let pages = Int(fields[1]) else { return nil }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    #else
    return nil
    #endif
}
