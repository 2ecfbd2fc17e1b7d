import CMultiprocessingShims

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Facts about the running process and thread, for the layers above this one, which name no C
/// function themselves.
enum ThisProcess {
    /// The process's id.
    ///
    /// The corresponding C function is `getpid(2)`.
    static var id: Int32 { getpid() }

    /// This machine's name, as `hostname` prints it; "?" if it cannot be read.
    static var hostName: String {
        var name = [CChar](repeating: 0, count: 256)
        guard gethostname(&name, name.count - 1) == 0 else { return "?" }
        return name.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    /// The number of processor cores this process may use: those its CPU affinity allows,
    /// fewer if a container (cgroup) CPU quota is lower.
    static var availableProcessorCount: Int { Int(mp_available_cpu_count()) }

    /// Sends SIGKILL to the process group led by `processID`.
    ///
    /// The corresponding C function is `kill(2)` with a negative pid.
    static func killProcessGroup(_ processID: Int32) {
        _ = kill(-processID, SIGKILL)
    }

    /// Lets another thread run on this core, if one is waiting.
    ///
    /// The corresponding C function is `sched_yield(2)`.
    static func yieldProcessor() { sched_yield() }

    /// Nanoseconds since the Unix epoch, from the system's real-time clock.
    static func wallClockNanoseconds() -> Int64 {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        return Int64(time.tv_sec) * 1_000_000_000 + Int64(time.tv_nsec)
    }

    /// Marks the calling thread with `tag`, a value that ``currentThreadTag`` reads back on
    /// this thread only (a thread-local variable in C).
    static func tagCurrentThread(_ tag: UInt) {
        mp_set_current_loop(UnsafeRawPointer(bitPattern: tag))
    }

    /// The tag the calling thread was given, or 0.
    static var currentThreadTag: UInt { UInt(bitPattern: mp_current_loop()) }

    /// Lets the calling thread receive SIGCHLD, which the C library's `posix_spawn` may need
    /// on the thread that starts commands.
    static func unblockChildSignalOnThisThread() { mp_unblock_sigchld_on_this_thread() }

    /// The resource limit a failed call most likely ran into, with its current value, e.g.
    /// `RLIMIT_NPROC (processes and threads per user) is 6`; nil when the error number points
    /// at no limit.
    ///
    /// `EAGAIN` from a call that makes a process or thread means the per-user limit on them;
    /// `EMFILE`, the limit on this process's open descriptors; `ENFILE`, the system's.
    ///
    /// The corresponding C function is `getrlimit(2)`.
    static func resourceLimitNote(call: String, errno: Errno) -> String? {
        func limit(_ resource: __rlimit_resource, _ name: String, _ meaning: String) -> String {
            var value = rlimit()
            guard getrlimit(__rlimit_resource_t(resource.rawValue), &value) == 0 else { return "\(name) (\(meaning))" }
            let current = value.rlim_cur == rlim_t.max ? "unlimited" : String(value.rlim_cur)
            return "\(name) (\(meaning)) is \(current)"
        }
        let makesTask = ["pthread_create", "posix_spawn", "fork", "clone"].contains { call.hasPrefix($0) }
        switch errno.rawValue {
        case EAGAIN where makesTask: return limit(__RLIMIT_NPROC, "RLIMIT_NPROC", "processes and threads per user")
        case EMFILE: return limit(RLIMIT_NOFILE, "RLIMIT_NOFILE", "open descriptors per process")
        case ENFILE: return "the system's table of open files is full (ENFILE)"
        default: return nil
        }
    }
}

/// ``ThisProcess/resourceLimitNote(call:errno:)`` for the `pool` command line, which checks
/// some limits before it starts a pool.
package func resourceLimitNote(call: String, errno: Int32) -> String? {
    ThisProcess.resourceLimitNote(call: call, errno: Errno(rawValue: errno))
}

/// The signals the library sends, by their Swift names.
enum Signal {
    /// `SIGKILL`: cannot be caught or ignored.
    static let kill: CInt = SIGKILL
    /// `SIGTERM`: the polite request to stop.
    static let terminate: CInt = SIGTERM
}
