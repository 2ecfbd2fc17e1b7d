import CMultiprocessingShims
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The system-level set-up a worker process does before any job code runs.
enum WorkerProcess {
    /// Moves the protocol off the standard streams: the coordinator's messages are read from a
    /// private duplicate of stdin and written to a private duplicate of stdout; then stdin reads
    /// from `/dev/null` and stdout is pointed at stderr, so a `print` in a job cannot corrupt a
    /// frame (the same trick as swift-syntax's plugin message connection).
    ///
    /// The input is a non-blocking descriptor of its own where the stream is a pipe (see
    /// `FileDescriptor.reopenedNonBlocking()`), so that a worker waiting for its next job can
    /// spin on the read itself.
    static func takeProtocolStreams() throws(SystemCallError) -> ProtocolStreams {
        let input: FileDescriptor
        let inputIsNonBlocking: Bool
        if let reopened = StandardStream.input.reopenedNonBlocking() {
            input = reopened
            inputIsNonBlocking = true
        } else {
            input = try StandardStream.input.duplicate()
            inputIsNonBlocking = false
        }
        let output: FileDescriptor
        do {
            output = try StandardStream.output.duplicate()
        } catch {
            input.close()
            throw error
        }
        do {
            try pointStandardStreamsAway()
        } catch {
            input.close()
            output.close()
            throw error
        }
        return ProtocolStreams(input: input, output: output, inputIsNonBlocking: inputIsNonBlocking)
    }

    /// Points stdin at `/dev/null` and stdout at stderr, and makes stdout line-buffered.
    private static func pointStandardStreamsAway() throws(SystemCallError) {
        let null = try FileDescriptor.openNullDevice(writable: false)
        let redirected = Result { () throws(SystemCallError) in
            try null.duplicate(as: .input)
            try StandardStream.error.withDescriptor { error throws(SystemCallError) in try error.duplicate(as: .output) }
        }
        null.close()
        try redirected.get()
        // stdout is now a pipe or file, which stdio would fully buffer: keep job output timely.
        mp_set_stdout_line_buffered()
    }

    /// The worker's private descriptors for the protocol.
    struct ProtocolStreams: ~Copyable {
        /// The coordinator's messages.
        var input: FileDescriptor
        /// Frames for the coordinator.
        var output: FileDescriptor
        /// Whether `input` returns at once when empty (see ``takeProtocolStreams()``).
        let inputIsNonBlocking: Bool
    }

    /// Asks the kernel to signal this process when its parent dies (Linux), with a handler that
    /// SIGKILLs the worker's whole process group, so the commands its job started die with it;
    /// then closes the start-up race: if the parent already died, the signal will never come,
    /// so exit now.
    static func dieWithParent(expectedParent: pid_t) {
        _ = mp_die_with_parent_taking_group()
        if getppid() != expectedParent {
            _exit(0)
        }
    }

    /// Starts a thread that ends the process the moment the coordinator's end of `input` is
    /// closed, even in the middle of a job. The coordinator closes it only when the worker is
    /// idle or the coordinator itself is gone, so this never cuts a job that is wanted. It
    /// backs up the parent-death signal, and it is the only guard where that does not reach
    /// (a worker behind `ssh`).
    ///
    /// - Parameter input: A descriptor of the protocol's input of the watchdog's own (a
    ///   duplicate), which it keeps until the process ends.
    /// - Throws: ``SystemCallError`` if the thread cannot be started.
    static func exitWhenClosed(_ input: consuming FileDescriptor) throws(SystemCallError) {
        let watched = DescriptorBox(input)
        try startOwnedThread(name: "mp-watchdog", stackSize: 64 * 1024) {
            // Waiting for the hang-up reads nothing, so the input is left to the serve loop.
            guard (try? watched.descriptor.waitUntilHungUp()) != nil else { return }
            // Take down what the job started too (a command runs in our group), but only when
            // the group is ours alone: a worker started by hand from a shell shares the
            // shell's group.
            if isRunningJob.load(ordering: .acquiring) && getpgrp() == getpid() { kill(0, SIGKILL) }
            _exit(0)
        }
    }

    /// Caps this process's address space (`RLIMIT_AS`), so a job that needs more memory fails
    /// to allocate instead of growing without bound.
    static func limitAddressSpace(to bytes: Int) throws(SystemCallError) {
        var limit = rlimit(rlim_cur: rlim_t(bytes), rlim_max: rlim_t(bytes))
        _ = try systemCall("setrlimit(RLIMIT_AS)") { setrlimit(__rlimit_resource_t(RLIMIT_AS.rawValue), &limit) }
    }

    /// Set by the worker loop while a batch runs, so the watchdog knows whether the job may
    /// have started processes that must go with it (otherwise it simply exits).
    static let isRunningJob = Atomic<Bool>(false)

    static var processID: pid_t { ThisProcess.id }

    static func environmentValue(_ name: String) -> String? {
        getenv(name).map { String(cString: $0) }
    }

    static func removeEnvironmentValue(_ name: String) {
        unsetenv(name)
    }

    /// Ends the process after flushing stdio.
    static func exitProcess(_ status: Int32) -> Never {
        fflush(nil)
        exit(status)
    }

    /// Writes a line straight to fd 2 (for the worker's own diagnostics).
    static func writeDiagnostic(_ message: String) {
        var line = message
        if !line.hasSuffix("\n") { line += "\n" }
        let bytes = Array(line.utf8)
        bytes.withUnsafeBytes { try? StandardStream.error.writeAll($0) }
    }
}
