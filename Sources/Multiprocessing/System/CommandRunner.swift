import CMultiprocessingShims
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Runs a command to completion, capturing its output: the system half of ``CommandJob``.
enum CommandRunner {
    struct Outcome {
        var status: TerminationStatus
        var standardOutput: [UInt8]
        var standardError: [UInt8]
        /// Set when the command wrote more than the limit it was given and was killed for it.
        var exceededOutputLimit = false
    }

    /// Per-process cache: a worker runs many commands, and `PATH` does not change.
    private static let resolved = Mutex<[[UInt8]: [UInt8]]>([:])

    /// /dev/null, opened once and shared by every command as its stdin.
    private static let cachedNullDevice = Mutex<DescriptorBox?>(nil)

    /// /dev/null, opened on first use (and again after a failure, such as a full descriptor
    /// table, rather than failing every later command).
    private static func nullDevice() throws(SystemCallError) -> DescriptorBox {
        if let known = cachedNullDevice.withLock({ $0 }) { return known }
        let opened = DescriptorBox(try FileDescriptor.openNullDevice(writable: false).movedAboveStandardStreams())
        return cachedNullDevice.withLock { cached in
            if let known = cached { return known }  // another thread won; ours closes as it goes
            cached = opened
            return opened
        }
    }

    /// Finds `name` the way a shell does: as a path if it contains a slash, else in `PATH`
    /// (remembered, as shells hash commands).
    static func resolve(_ name: [UInt8]) -> [UInt8]? {
        if name.contains(UInt8(ascii: "/")) { return name }
        if let known = resolved.withLock({ $0[name] }) { return known }
        guard let found = search(name) else { return nil }
        resolved.withLock { $0[name] = found }
        return found
    }

    /// The worker's environment as C strings, built once and kept for the process's life:
    /// every command gets the same.
    private static let environmentBlock = CStringArray(currentEnvironment())

    private static func search(_ name: [UInt8]) -> [UInt8]? {
        let path = WorkerProcess.environmentValue("PATH") ?? "/usr/local/bin:/usr/bin:/bin"
        for directory in path.utf8.split(separator: UInt8(ascii: ":"), omittingEmptySubsequences: false) {
            let candidate = (directory.isEmpty ? Array(".".utf8) : Array(directory)) + [UInt8(ascii: "/")] + name
            if withPath(candidate, { access($0, X_OK) }) == 0 { return candidate }
        }
        return nil
    }

    /// Spawns `arguments` (no shell), with stdin from /dev/null or `standardInput`, in the
    /// calling process's group, and reads its stdout and stderr until it exits; blocks the
    /// calling thread (a worker's own job thread).
    ///
    /// - Parameters:
    ///   - standardInput: Bytes for the command to read on its stdin, written as it reads them
    ///     while its output is collected (so neither side can fill a pipe and wait for the
    ///     other); a command that exits without reading them all just leaves the rest.
    ///   - stream: If given, output is passed to it as it arrives, whole lines at a time
    ///     (index 0 stdout, 1 stderr), instead of being returned in the outcome.
    ///   - outputLimit: The most bytes of output (both streams) kept; a command that writes
    ///     more is killed at once, what it wrote is dropped, and the outcome says so, so that a
    ///     runaway command (`yes`) cannot take the worker's memory.
    static func run(
        _ arguments: [[UInt8]], standardInput: InputSource? = nil, stream: ((Int, UnsafeRawBufferPointer) -> Void)? = nil,
        outputLimit: Int = .max
    ) throws(SpawnFailure) -> Outcome {
        guard let name = arguments.first else {
            return Outcome(status: .exited(127), standardOutput: [], standardError: Array("pool: empty command\n".utf8))
        }
        guard let executable = resolve(name) else {
            return Outcome(status: .exited(127), standardOutput: [], standardError: Array("pool: ".utf8) + name + Array(": command not found\n".utf8))
        }
        func fail(_ error: SystemCallError) -> SpawnFailure {
            SpawnFailure(executable: String(decoding: executable, as: UTF8.self), call: error.call, errno: error.errno)
        }
        let output: FileDescriptor.Pipe
        let errors: FileDescriptor.Pipe
        do {
            output = try FileDescriptor.pipe()
        } catch {
            throw fail(error)
        }
        do {
            errors = try FileDescriptor.pipe()
        } catch {
            output.close()
            throw fail(error)
        }
        // Stdin: /dev/null, shared by every command, or a pipe of its own that we feed.
        var nullInput: DescriptorBox?
        var inputPipe: FileDescriptor.Pipe?
        do {
            // A command that exits before reading all its input makes our write fail with
            // EPIPE, not kill the worker with SIGPIPE.
            if standardInput != nil { blockBrokenPipeSignal() }
            if let standardInput, standardInput.namedPipe == nil {
                inputPipe = .some(try FileDescriptor.pipe())
                try inputPipe!.writeEnd.setNonBlocking()
                // More than the default 64 KiB: fewer wake-ups of both sides for a large input.
                if standardInput.count > 1 << 16 { inputPipe!.writeEnd.trySetPipeBufferSize(1 << 20) }
            } else {
                nullInput = try nullDevice()
            }
        } catch {
            output.close()
            errors.close()
            inputPipe.take()?.close()
            throw fail(error)
        }
        var child: ChildProcess
        do {
            if inputPipe != nil {
                child = try spawnProcess(
                    executable: executable, arguments: Array(arguments.dropFirst()), environment: environmentBlock,
                    standardInput: inputPipe!.readEnd, standardOutput: output.writeEnd, standardError: errors.writeEnd,
                    newProcessGroup: false)
            } else {
                child = try spawnProcess(
                    executable: executable, arguments: Array(arguments.dropFirst()), environment: environmentBlock,
                    standardInput: nullInput!.descriptor, standardOutput: output.writeEnd, standardError: errors.writeEnd,
                    newProcessGroup: false)
            }
        } catch {
            output.close()
            errors.close()
            inputPipe.take()?.close()
            if error.errno.rawValue == ENOENT || error.errno.rawValue == EACCES {
                let message = Array("pool: ".utf8) + name + Array(": \(error.errno)\n".utf8)
                return Outcome(status: .exited(error.errno.rawValue == ENOENT ? 127 : 126), standardOutput: [], standardError: message)
            }
            throw error
        }
        var feeder = InputFeeder(source: standardInput ?? InputSource(bytes: []))
        if let pipe = inputPipe.take() {
            pipe.readEnd.close()
            feeder.descriptor = .some(pipe.writeEnd)
        }
        feeder.feed()
        let pid = child.pid
        var captured = CapturedOutput(stream: stream, limit: outputLimit) { _ = kill(pid, SIGKILL) }
        let outputReader = output.readEnd
        let errorReader = errors.readEnd
        if child.exitDescriptor != nil, (try? outputReader.setNonBlocking()) != nil, (try? errorReader.setNonBlocking()) != nil {
            // Keeping the write ends open means the pipes never hang up, so the thread wakes
            // for output and once for the exit (the pidfd), not for each pipe's end and again
            // for the exit: two sleeps fewer per command. Output written after the command
            // exits (by something it left running in the background) is not collected.
            captureUntilExit(outputReader, errorReader, exit: child.exitDescriptor!, feeding: &feeder, into: &captured)
            output.writeEnd.close()
            errors.writeEnd.close()
            if !captured.exceededLimit {
                drain(outputReader, into: &captured, 0)
                drain(errorReader, into: &captured, 1)
            }
            outputReader.close()
            errorReader.close()
        } else {
            output.writeEnd.close()
            errors.writeEnd.close()
            captureUntilEnd(outputReader, errorReader, feeding: &feeder, into: &captured)
        }
        feeder.stop()
        captured.finish()
        let status = (try? child.reap()) ?? .exited(-1)
        child.closeExitDescriptor()
        return Outcome(
            status: status, standardOutput: captured.bytes[0], standardError: captured.bytes[1], exceededOutputLimit: captured.exceededLimit)
    }

    /// A command's stdout (0) and stderr (1): kept whole, or passed on line by line.
    private struct CapturedOutput {
        var bytes: [[UInt8]] = [[], []]
        let stream: ((Int, UnsafeRawBufferPointer) -> Void)?
        /// The most bytes kept, both streams together.
        let limit: Int
        /// Called once, when the output passes `limit`.
        let onLimit: () -> Void
        private(set) var exceededLimit = false

        /// A line this long is passed on unfinished, so memory stays bounded.
        static let longestHeldLine = 1 << 20

        init(stream: ((Int, UnsafeRawBufferPointer) -> Void)?, limit: Int, onLimit: @escaping () -> Void) {
            self.stream = stream
            self.limit = limit
            self.onLimit = onLimit
        }

        mutating func append(_ chunk: UnsafeRawBufferPointer, to index: Int) {
            guard !exceededLimit else { return }  // read only to let the command's writes go on
            if stream == nil && bytes[0].count + bytes[1].count + chunk.count > limit {
                exceededLimit = true
                bytes = [[], []]
                onLimit()
                return
            }
            bytes[index].append(contentsOf: chunk)
            guard let stream else { return }
            let end: Int
            if let newline = bytes[index].lastIndex(of: UInt8(ascii: "\n")) {
                end = newline + 1
            } else if bytes[index].count >= Self.longestHeldLine {
                end = bytes[index].count
            } else {
                return
            }
            bytes[index].withUnsafeBytes { stream(index, UnsafeRawBufferPointer(rebasing: $0[..<end])) }
            bytes[index].removeFirst(end)
        }

        /// Passes on what is left (a last line without a newline).
        mutating func finish() {
            guard let stream, !exceededLimit else { return }
            for index in bytes.indices where !bytes[index].isEmpty {
                bytes[index].withUnsafeBytes { stream(index, $0) }
                bytes[index].removeAll()
            }
        }
    }

    /// The bytes a command reads on its stdin, written to a non-blocking pipe as it takes them.
    /// What a command reads: bytes, then perhaps a range of a file; on its stdin, or from a
    /// named pipe it opens.
    struct InputSource {
        var bytes: [UInt8]
        /// The file the rest comes from, and where in it the rest starts and ends.
        private(set) var file: DescriptorBox?
        private(set) var fileOffset = 0
        private(set) var fileEnd = 0
        /// A named pipe to write to instead of the command's stdin.
        var namedPipe: [UInt8]?

        init(bytes: [UInt8]) { self.bytes = bytes }

        /// The bytes still to send.
        var count: Int { bytes.count + (fileEnd - fileOffset) }

        /// Opens the file of `range`, to be sent after the bytes.
        /// - Returns: The file's size if it is a regular file, for the caller to check the
        ///   range against; nil for other files (devices).
        mutating func append(_ range: CommandJob.FileRange) throws(SystemCallError) -> Int? {
            guard range.offset >= 0, range.byteCount >= 0, range.offset <= Int.max - range.byteCount, !range.path.contains(0) else {
                throw SystemCallError(call: "open", errno: Errno(rawValue: EINVAL))
            }
            let descriptor = withPath(range.path) { open($0, O_RDONLY | O_CLOEXEC) }
            guard descriptor >= 0 else { throw SystemCallError(call: "open", errno: .current) }
            file = DescriptorBox(FileDescriptor(owning: descriptor))
            fileOffset = range.offset
            fileEnd = range.offset + range.byteCount
            var status = stat()
            guard fstat(descriptor, &status) == 0 else { throw SystemCallError(call: "fstat", errno: .current) }
            return status.st_mode & S_IFMT == S_IFREG ? Int(status.st_size) : nil
        }

        /// Sends what `descriptor` takes of the file's range; `.transferred(0)` when the file
        /// ended before the range (it shrank), nil on an error (the reader went away, or the
        /// descriptor cannot take `sendfile`, which ``readFileChunk()`` then stands in for).
        mutating func sendFile(to descriptor: borrowing FileDescriptor) -> FileDescriptor.IOResult? {
            guard let file, fileOffset < fileEnd else { return .transferred(0) }
            while true {
                var position = Int64(fileOffset)
                let sent = mp_send_file(descriptor.rawValue, file.descriptor.rawValue, &position, Swift.min(fileEnd - fileOffset, 1 << 20))
                if sent >= 0 {
                    fileOffset = Int(position)
                    return .transferred(sent)
                }
                switch errno {
                case EINTR: continue
                case EAGAIN: return .wouldBlock
                default: return nil
                }
            }
        }

        /// Reads the next part of the file's range into ``bytes`` (which must be sent), where
        /// `sendfile` cannot be used; false at the range's end or the file's.
        mutating func readFileChunk() -> Bool {
            guard let file, fileOffset < fileEnd else { return false }
            let wanted = Swift.min(fileEnd - fileOffset, 1 << 18)
            var got = 0
            bytes = [UInt8](unsafeUninitializedCapacity: wanted) { buffer, count in
                repeat {
                    got = pread(file.descriptor.rawValue, buffer.baseAddress, wanted, off_t(fileOffset))
                } while got < 0 && errno == EINTR
                count = Swift.max(0, got)
            }
            guard got > 0 else {
                fileOffset = fileEnd
                return false
            }
            fileOffset += got
            return true
        }

        private static func write(_ bytes: [UInt8], to descriptor: borrowing FileDescriptor) throws(SystemCallError) {
            var failure: SystemCallError?
            bytes.withUnsafeBytes { buffer in
                do throws(SystemCallError) {
                    try descriptor.writeAll(buffer)
                } catch {
                    failure = error
                }
            }
            if let failure { throw failure }
        }

        /// Writes everything to `descriptor`, blocking: into a temporary file.
        mutating func writeAll(to descriptor: borrowing FileDescriptor) throws(SystemCallError) {
            try Self.write(bytes, to: descriptor)
            bytes = []
            while fileOffset < fileEnd {
                switch sendFile(to: descriptor) {
                case .transferred(let count)? where count > 0:
                    continue
                case .transferred?, .wouldBlock?:
                    return
                case nil:
                    guard readFileChunk() else { return }
                    try Self.write(bytes, to: descriptor)
                    bytes = []
                }
            }
        }
    }

    /// Feeds a command's input to its stdin, or to a named pipe once the command opens it, as
    /// it reads it.
    private struct InputFeeder: ~Copyable {
        /// Our end of the command's stdin or named pipe; nil once everything is written or it
        /// stopped reading, and, for a named pipe, until the command opens it.
        var descriptor: FileDescriptor?
        private var source: InputSource
        private var offset = 0
        /// A named pipe with no reader yet: it is opened (without waiting) again and again
        /// until the command opens it too.
        private var waitingPipe: [UInt8]?
        private var openAttempts = 0

        init(source: InputSource) {
            self.source = source
            waitingPipe = source.namedPipe
        }

        /// How long the caller's poll may wait, in milliseconds: without end, or, while a named
        /// pipe has no reader (an event no descriptor reports), 1 ms growing to 50 ms.
        var pollTimeout: Int32 { waitingPipe == nil ? -1 : Int32(Swift.min(50, 1 << Swift.min(openAttempts, 6))) }

        /// Writes what the pipe takes now, and closes it after the last byte or when the
        /// command has stopped reading (EPIPE).
        mutating func feed() {
            if waitingPipe != nil && !openNamedPipe() { return }
            guard descriptor != nil else { return }
            while true {
                while offset < source.bytes.count {
                    let written = source.bytes.withUnsafeBytes { all in try? descriptor!.write(UnsafeRawBufferPointer(rebasing: all[offset...])) }
                    switch written {
                    case .transferred(let count)?: offset += count
                    case .wouldBlock?: return
                    case nil:  // The command closed its stdin: the rest is not for it.
                        descriptor.take()?.close()
                        return
                    }
                }
                switch source.sendFile(to: descriptor!) {
                case .transferred(let count)? where count > 0: continue
                case .wouldBlock?: return
                case .transferred?: break
                case nil:
                    // A reader that went away fails `read` as well as `sendfile`: the
                    // plain write above then closes.
                    offset = 0
                    if source.readFileChunk() { continue }
                }
                break
            }
            descriptor.take()?.close()
        }

        /// Opens the named pipe for writing if the command has opened it for reading.
        private mutating func openNamedPipe() -> Bool {
            let opened = withPath(waitingPipe!) { open($0, O_WRONLY | O_NONBLOCK | O_CLOEXEC) }
            if opened >= 0 {
                descriptor = .some(FileDescriptor(owning: opened))
                waitingPipe = nil
                return true
            }
            if errno == ENXIO || errno == EINTR {
                openAttempts += 1
            } else {
                waitingPipe = nil  // Gone: nothing can be fed.
            }
            return false
        }

        /// Adds our end to `pollSet` while there is more to write; returns its slot.
        func register(in pollSet: inout PollSet) -> Int? {
            descriptor == nil ? nil : pollSet.add(descriptor!, .writable)
        }

        /// Whether a named pipe is still to be opened (on each wake-up, whatever woke it).
        var isWaitingForReader: Bool { waitingPipe != nil }

        /// Closes our end, whatever is left: the command has exited.
        mutating func stop() {
            waitingPipe = nil
            descriptor.take()?.close()
        }
    }

    /// Reads both pipes as output arrives, and feeds stdin, until the pidfd `exit` says the
    /// command has exited.
    private static func captureUntilExit(
        _ output: borrowing FileDescriptor, _ errors: borrowing FileDescriptor, exit: borrowing FileDescriptor,
        feeding feeder: inout InputFeeder, into captured: inout CapturedOutput
    ) {
        var pollSet = PollSet()
        while true {
            pollSet.removeAll()
            pollSet.add(output, .readable)
            pollSet.add(errors, .readable)
            pollSet.add(exit, .readable)
            let inputSlot = feeder.register(in: &pollSet)
            // Cannot wait any more: collect what there is and reap.
            guard (try? pollSet.wait(timeoutMilliseconds: feeder.pollTimeout)) != nil else { return }
            if feeder.isWaitingForReader || inputSlot.map({ !pollSet.events(at: $0).isEmpty }) == true { feeder.feed() }
            if !pollSet.events(at: 0).isEmpty { drain(output, into: &captured, 0) }
            if !pollSet.events(at: 1).isEmpty { drain(errors, into: &captured, 1) }
            if !pollSet.events(at: 2).isEmpty { return }
        }
    }

    /// Reads what a non-blocking pipe holds now, until it would block or ends.
    private static func drain(_ descriptor: borrowing FileDescriptor, into captured: inout CapturedOutput, _ index: Int) {
        withUnsafeTemporaryAllocation(byteCount: 64 * 1024, alignment: 1) { chunk in
            while case .transferred(let count)? = try? descriptor.read(into: chunk), count > 0 {
                captured.append(UnsafeRawBufferPointer(rebasing: chunk[0..<count]), to: index)
            }
        }
    }

    /// Reads both (blocking) pipes until both end, and closes them: where there is no pidfd.
    private static func captureUntilEnd(
        _ output: consuming FileDescriptor, _ errors: consuming FileDescriptor, feeding feeder: inout InputFeeder,
        into captured: inout CapturedOutput
    ) {
        var outputEnd: FileDescriptor? = .some(output)
        var errorEnd: FileDescriptor? = .some(errors)
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        /// Reads once from `end` if `slot` reported an event; closes it at its end.
        func readOnce(_ end: inout FileDescriptor?, slot: Int?, events pollSet: borrowing PollSet, index: Int) {
            guard let slot, !pollSet.events(at: slot).isEmpty else { return }
            let count = chunk.withUnsafeMutableBytes { buffer in (try? end!.readWaiting(into: buffer)) ?? 0 }
            if count > 0 {
                chunk.withUnsafeBytes { captured.append(UnsafeRawBufferPointer(rebasing: $0[0..<count]), to: index) }
            } else {
                end.take()?.close()
            }
        }
        while outputEnd != nil || errorEnd != nil {
            var pollSet = PollSet()
            let outputSlot = outputEnd == nil ? nil : pollSet.add(outputEnd!, .readable)
            let errorSlot = errorEnd == nil ? nil : pollSet.add(errorEnd!, .readable)
            let inputSlot = feeder.register(in: &pollSet)
            guard (try? pollSet.wait(timeoutMilliseconds: feeder.pollTimeout)) != nil else {
                // Cannot wait any more: close our ends (so the command cannot block writing to
                // a full pipe) and reap it.
                outputEnd.take()?.close()
                errorEnd.take()?.close()
                return
            }
            if feeder.isWaitingForReader || inputSlot.map({ !pollSet.events(at: $0).isEmpty }) == true { feeder.feed() }
            readOnce(&outputEnd, slot: outputSlot, events: pollSet, index: 0)
            readOnce(&errorEnd, slot: errorSlot, events: pollSet, index: 1)
        }
    }
}

/// A file in `$TMPDIR` (or `/tmp`) that holds given bytes, for a command that wants its input
/// as a file name rather than on stdin; only its creator may read it.
struct TemporaryFile {
    /// Its path, as bytes.
    let path: [UInt8]

    /// - Throws: ``SystemCallError`` naming `mkstemp` or `write`.
    init(holding source: CommandRunner.InputSource) throws(SystemCallError) {
        let directory = WorkerProcess.environmentValue("TMPDIR").flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        var template = Array((directory + "/pool-input-XXXXXX").utf8CString)
        let descriptor = template.withUnsafeMutableBufferPointer { mp_mkstemp_cloexec($0.baseAddress!) }
        guard descriptor >= 0 else { throw SystemCallError(call: "mkstemp", errno: .current) }
        path = template.dropLast().map { UInt8(bitPattern: $0) }
        // A worker killed in the middle of the job (a timeout) removes it on its way out.
        _ = template.withUnsafeBufferPointer { mp_remove_on_termination(0, $0.baseAddress!) }
        let file = FileDescriptor(owning: descriptor)
        var failure: SystemCallError?
        var source = source
        do throws(SystemCallError) {
            try source.writeAll(to: file)
        } catch {
            failure = error
        }
        file.close()
        if let failure {
            remove()
            throw failure
        }
    }

    /// Deletes the file.
    func remove() {
        _ = withPath(path) { unlink($0) }
        mp_remove_on_termination(0, nil)
    }
}

/// A named pipe in a new directory of `$TMPDIR` (or `/tmp`) that only its creator may use,
/// for a command that reads its input from a file name (`pool run --fifo`).
struct TemporaryNamedPipe {
    /// Its path, as bytes.
    let path: [UInt8]
    private let directory: [UInt8]

    /// - Throws: ``SystemCallError`` naming `mkdtemp` or `mkfifo`.
    init() throws(SystemCallError) {
        let parent = WorkerProcess.environmentValue("TMPDIR").flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        var template = Array((parent + "/pool-fifo-XXXXXX").utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw SystemCallError(call: "mkdtemp", errno: .current)
        }
        directory = template.dropLast().map { UInt8(bitPattern: $0) }
        path = directory + Array("/input".utf8)
        // A worker killed in the middle of the job (a timeout) removes them on its way out.
        _ = withPath(directory) { mp_remove_on_termination(1, $0) }
        guard withPath(path, { mkfifo($0, 0o600) }) == 0 else {
            let failure = SystemCallError(call: "mkfifo", errno: .current)
            _ = withPath(directory) { rmdir($0) }
            mp_remove_on_termination(1, nil)
            throw failure
        }
        _ = withPath(path) { mp_remove_on_termination(0, $0) }
    }

    /// Deletes the pipe and its directory.
    func remove() {
        _ = withPath(path) { unlink($0) }
        _ = withPath(directory) { rmdir($0) }
        mp_remove_on_termination(0, nil)
        mp_remove_on_termination(1, nil)
    }
}

/// Calls `body` with `path` as a C string.
func withPath<Result>(_ path: [UInt8], _ body: (UnsafePointer<CChar>) -> Result) -> Result {
    (path + [0]).withUnsafeBufferPointer { buffer in
        buffer.baseAddress!.withMemoryRebound(to: CChar.self, capacity: buffer.count, body)
    }
}
