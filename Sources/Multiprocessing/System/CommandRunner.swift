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

    /// Spawns `arguments` (no shell), with stdin from /dev/null, in the calling process's
    /// group, and reads its stdout and stderr until it exits; blocks the calling thread (a
    /// worker's own job thread).
    ///
    /// - Parameters:
    ///   - stream: If given, output is passed to it as it arrives, whole lines at a time
    ///     (index 0 stdout, 1 stderr), instead of being returned in the outcome.
    ///   - outputLimit: The most bytes of output (both streams) kept; a command that writes
    ///     more is killed at once, what it wrote is dropped, and the outcome says so, so that a
    ///     runaway command (`yes`) cannot take the worker's memory.
    static func run(
        _ arguments: [[UInt8]], stream: ((Int, UnsafeRawBufferPointer) -> Void)? = nil, outputLimit: Int = .max
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
        let input: DescriptorBox
        let output: FileDescriptor.Pipe
        let errors: FileDescriptor.Pipe
        do {
            input = try nullDevice()
            output = try FileDescriptor.pipe()
        } catch {
            throw fail(error)
        }
        do {
            errors = try FileDescriptor.pipe()
        } catch {
            output.readEnd.close()
            output.writeEnd.close()
            throw fail(error)
        }
        var child: ChildProcess
        do {
            child = try spawnProcess(
                executable: executable, arguments: Array(arguments.dropFirst()), environment: environmentBlock,
                standardInput: input.descriptor, standardOutput: output.writeEnd, standardError: errors.writeEnd,
                newProcessGroup: false)
        } catch {
            output.readEnd.close()
            output.writeEnd.close()
            errors.readEnd.close()
            errors.writeEnd.close()
            if error.errno.rawValue == ENOENT || error.errno.rawValue == EACCES {
                let message = Array("pool: ".utf8) + name + Array(": \(error.errno)\n".utf8)
                return Outcome(status: .exited(error.errno.rawValue == ENOENT ? 127 : 126), standardOutput: [], standardError: message)
            }
            throw error
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
            captureUntilExit(outputReader, errorReader, exit: child.exitDescriptor!, into: &captured)
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
            captureUntilEnd(outputReader, errorReader, into: &captured)
        }
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

    /// Reads both pipes as output arrives until the pidfd `exit` says the command has exited.
    private static func captureUntilExit(
        _ output: borrowing FileDescriptor, _ errors: borrowing FileDescriptor, exit: borrowing FileDescriptor,
        into captured: inout CapturedOutput
    ) {
        var pollSet = PollSet()
        pollSet.add(output, .readable)
        pollSet.add(errors, .readable)
        pollSet.add(exit, .readable)
        while true {
            // Cannot wait any more: collect what there is and reap.
            guard (try? pollSet.wait(timeoutMilliseconds: -1)) != nil else { return }
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
    private static func captureUntilEnd(_ output: consuming FileDescriptor, _ errors: consuming FileDescriptor, into captured: inout CapturedOutput) {
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
            guard (try? pollSet.wait(timeoutMilliseconds: -1)) != nil else {
                // Cannot wait any more: close our ends (so the command cannot block writing to
                // a full pipe) and reap it.
                outputEnd.take()?.close()
                errorEnd.take()?.close()
                return
            }
            readOnce(&outputEnd, slot: outputSlot, events: pollSet, index: 0)
            readOnce(&errorEnd, slot: errorSlot, events: pollSet, index: 1)
        }
    }
}
