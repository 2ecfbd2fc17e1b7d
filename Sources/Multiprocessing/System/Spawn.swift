import CMultiprocessingShims

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why `posix_spawn` failed, with the path it was asked to run.
struct SpawnFailure: Error {
    var executable: String
    var call: String
    var errno: Errno
}

/// Starts a child process with `posix_spawn`, never through a shell.
///
/// The child gets exactly three descriptors: `standardInput`, `standardOutput` and
/// `standardError` become its 0, 1 and 2, and everything else is closed, because every
/// descriptor this library creates is close-on-exec and the spawn also closes from 3 up where
/// the C library allows. The child leads a new process group (so a terminal's Ctrl-C reaches
/// only the coordinator) with an empty signal mask and every signal at its default action.
func spawnProcess(
    executable: String,
    arguments: [String],
    environment: borrowing CStringArray,
    standardInput: borrowing FileDescriptor,
    standardOutput: borrowing FileDescriptor,
    standardError: borrowing FileDescriptor,
    newProcessGroup: Bool = true
) throws(SpawnFailure) -> ChildProcess {
    try spawnProcess(
        executable: Array(executable.utf8), arguments: arguments.map { Array($0.utf8) }, environment: environment,
        standardInput: standardInput, standardOutput: standardOutput, standardError: standardError, newProcessGroup: newProcessGroup)
}

/// ``spawnProcess(executable:arguments:environment:standardInput:standardOutput:standardError:newProcessGroup:)``
/// with the path and arguments as bytes, exactly as the kernel takes them: Linux file names and
/// arguments need not be UTF-8. None may contain a NUL byte.
func spawnProcess(
    executable: [UInt8],
    arguments: [[UInt8]],
    environment: borrowing CStringArray,
    standardInput: borrowing FileDescriptor,
    standardOutput: borrowing FileDescriptor,
    standardError: borrowing FileDescriptor,
    newProcessGroup: Bool = true
) throws(SpawnFailure) -> ChildProcess {
    func failure(_ call: String, _ code: CInt) -> SpawnFailure {
        SpawnFailure(executable: String(decoding: executable, as: UTF8.self), call: call, errno: Errno(rawValue: code))
    }

    var actions = posix_spawn_file_actions_t()
    var code = posix_spawn_file_actions_init(&actions)
    guard code == 0 else { throw failure("posix_spawn_file_actions_init", code) }
    defer { posix_spawn_file_actions_destroy(&actions) }

    // 1. Standard streams. The sources are never 0...2 (FileDescriptor.pipe guarantees it), so
    //    each dup2 really duplicates and the copy loses close-on-exec while the source keeps it.
    for (source, target) in [(standardInput.rawValue, 0), (standardOutput.rawValue, 1), (standardError.rawValue, 2)] as [(CInt, CInt)] {
        code = posix_spawn_file_actions_adddup2(&actions, source, target)
        guard code == 0 else { throw failure("posix_spawn_file_actions_adddup2", code) }
    }
    // 2. Close everything else the application may have left inheritable. Optional: without it,
    //    close-on-exec on our own descriptors still keeps the protocol pipes private.
    _ = mp_spawn_file_actions_addclosefrom(&actions, 3)

    var attributes = posix_spawnattr_t()
    code = posix_spawnattr_init(&attributes)
    guard code == 0 else { throw failure("posix_spawnattr_init", code) }
    defer { posix_spawnattr_destroy(&attributes) }

    // 3. New process group, clean signal mask, default dispositions for every signal (a
    //    coordinator that ignores SIGPIPE or SIGINT must not pass that on to its workers).
    var emptyMask = sigset_t()
    sigemptyset(&emptyMask)
    //    (glibc's child visits every signal whatever the set says; naming them all here
    //    costs it one system call each instead of two.)
    var allSignals = sigset_t()
    sigfillset(&allSignals)
    //    A command a worker runs stays in the worker's group instead, so that stopping the
    //    worker's group stops the command too.
    let flags = (newProcessGroup ? POSIX_SPAWN_SETPGROUP : 0) | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF
    code = posix_spawnattr_setflags(&attributes, Int16(flags))
    guard code == 0 else { throw failure("posix_spawnattr_setflags", code) }
    code = posix_spawnattr_setpgroup(&attributes, 0)
    guard code == 0 else { throw failure("posix_spawnattr_setpgroup", code) }
    code = posix_spawnattr_setsigmask(&attributes, &emptyMask)
    guard code == 0 else { throw failure("posix_spawnattr_setsigmask", code) }
    code = posix_spawnattr_setsigdefault(&attributes, &allSignals)
    guard code == 0 else { throw failure("posix_spawnattr_setsigdefault", code) }

    let argv = CStringArray(bytes: [executable] + arguments)
    var pid: pid_t = 0
    // glibc reports a failed exec (ENOENT, EACCES, ENOEXEC) as posix_spawn's own result.
    code = posix_spawn(&pid, argv.pointers[0]!, &actions, &attributes, argv.pointers, environment.pointers)
    argv.deallocate()
    guard code == 0 else { throw failure("posix_spawn", code) }

    // The child is ours and not yet reaped, so its pid cannot have been reused.
    let pidfd = mp_pidfd_open(pid)
    return ChildProcess(pid: pid, exitDescriptor: pidfd >= 0 ? FileDescriptor(owning: pidfd) : nil)
}

/// A NULL-terminated array of C strings, as `posix_spawn` takes for argv and envp. It cannot be
/// copied, and ``deallocate()`` consumes it, so it is freed exactly once; one dropped without
/// being freed is a bug that debug builds catch.
struct CStringArray: ~Copyable, @unchecked Sendable {
    // @unchecked: never mutated after init; shared read-only.
    let pointers: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>
    let count: Int

    init(_ strings: [String]) {
        count = strings.count
        pointers = .allocate(capacity: strings.count + 1)
        for (index, string) in strings.enumerated() {
            pointers[index] = strdup(string)
        }
        pointers[strings.count] = nil
    }

    /// C strings of exactly these bytes, each with a NUL added.
    init(bytes strings: [[UInt8]]) {
        count = strings.count
        pointers = .allocate(capacity: strings.count + 1)
        for (index, string) in strings.enumerated() {
            let copy = malloc(string.count + 1)!.assumingMemoryBound(to: CChar.self)
            string.withUnsafeBytes { source in
                if let base = source.baseAddress { memcpy(copy, base, string.count) }
            }
            copy[string.count] = 0
            pointers[index] = copy
        }
        pointers[strings.count] = nil
    }

    consuming func deallocate() {
        freeStrings()
        discard self
    }

    private func freeStrings() {
        for index in 0..<count { free(pointers[index]) }
        pointers.deallocate()
    }

    deinit {
        assertionFailure("multiprocessing: a C string array dropped without deallocate()")
        freeStrings()
    }
}

/// The environment of this process as `KEY=VALUE` strings.
func currentEnvironment() -> [String] {
    var result: [String] = []
    guard var entry = mp_environ() else { return result }
    while let pointer = entry.pointee {
        result.append(String(cString: pointer))
        entry += 1
    }
    return result
}

/// The absolute path of the running executable (`/proc/self/exe` on Linux).
func currentExecutablePath() -> String? {
    #if os(Linux)
    var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    let length = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    guard length > 0 else { return nil }
    return buffer.withUnsafeBufferPointer { pointer in
        String(decoding: UnsafeRawBufferPointer(start: pointer.baseAddress, count: length), as: UTF8.self)
    }
    #else
    return CommandLine.arguments.first
    #endif
}
