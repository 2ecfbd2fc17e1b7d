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
            let candidate = (directory.isEmpty ? Array(".".utf8) : Array(directory)) + [UInt8(ascii: "/")] + name + [0]
            if candidate.withUnsafeBufferPointer({ access(UnsafeRawPointer($0.baseAddress!).assumingMemoryBound(to: CChar.self), X_OK) }) == 0 {
                return Array(candidate.dropLast())
            }
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
        _ arguments: [[UInt8]], standardInput: [UInt8]? = nil, stream: ((Int, UnsafeRawBufferPointer) -> Void)? = nil,
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
            if standardInput != nil {
                inputPipe = .some(try FileDescriptor.pipe())
                try inputPipe!.writeEnd.setNonBlocking()
                // A command that exits before reading all of it makes our write fail with
                // EPIPE, not kill the worker with SIGPIPE.
                blockBrokenPipeSignal()
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
        var feeder = InputFeeder(bytes: standardInput ?? [])
        if let pipe = inputPipe.take() {
            pipe.readEnd.close()
            feeder.descriptor = .some(pipe.writeEnd)
            feeder.feed()
        }
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
    private struct InputFeeder: ~Copyable {
        /// Our end of the command's stdin; nil once everything is written or it stopped reading.
        var descriptor: FileDescriptor?
        let bytes: [UInt8]
        private var offset = 0

        init(bytes: [UInt8]) { self.bytes = bytes }

        /// Writes what the pipe takes now, and closes it after the last byte or when the
        /// command has stopped reading (EPIPE).
        mutating func feed() {
            guard descriptor != nil else { return }
            while offset < bytes.count {
                let written = bytes.withUnsafeBytes { all in try? descriptor!.write(UnsafeRawBufferPointer(rebasing: all[offset...])) }
                switch written {
                case .transferred(let count)?: offset += count
                case .wouldBlock?: return
                case nil: offset = bytes.count  // The command closed its stdin: the rest is not for it.
                }
            }
            descriptor.take()?.close()
        }

        /// Adds our end to `pollSet` while there is more to write; returns its slot.
        func register(in pollSet: inout PollSet) -> Int? {
            descriptor == nil ? nil : pollSet.add(descriptor!, .writable)
        }

        /// Closes our end, whatever is left: the command has exited.
        mutating func stop() { descriptor.take()?.close() }
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
            guard (try? pollSet.wait(timeoutMilliseconds: -1)) != nil else { return }
            if let inputSlot, !pollSet.events(at: inputSlot).isEmpty { feeder.feed() }
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
            guard (try? pollSet.wait(timeoutMilliseconds: -1)) != nil else {
                // Cannot wait any more: close our ends (so the command cannot block writing to
                // a full pipe) and reap it.
                outputEnd.take()?.close()
                errorEnd.take()?.close()
                return
            }
            if let inputSlot, !pollSet.events(at: inputSlot).isEmpty { feeder.feed() }
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
    init(holding bytes: [UInt8]) throws(SystemCallError) {
        let directory = WorkerProcess.environmentValue("TMPDIR").flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        var template = Array((directory + "/pool-input-XXXXXX").utf8CString)
        let descriptor = template.withUnsafeMutableBufferPointer { mp_mkstemp_cloexec($0.baseAddress!) }
        guard descriptor >= 0 else { throw SystemCallError(call: "mkstemp", errno: .current) }
        path = template.dropLast().map { UInt8(bitPattern: $0) }
        let file = FileDescriptor(owning: descriptor)
        var failure: SystemCallError?
        bytes.withUnsafeBytes { buffer in
            do throws(SystemCallError) {
                try file.writeAll(buffer)
            } catch {
                failure = error
            }
        }
        file.close()
        if let failure {
            remove()
            throw failure
        }
    }

    /// Deletes the file.
    func remove() {
        _ = (path + [0]).withUnsafeBufferPointer { buffer in
            buffer.baseAddress!.withMemoryRebound(to: CChar.self, capacity: buffer.count) { unlink($0) }
        }
    }
}
