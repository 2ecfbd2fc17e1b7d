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
    }

    /// Per-process caches: a worker runs many commands, and its environment does not change.
    private static let cache = Mutex(Cache())

    private struct Cache {
        var resolved: [String: String] = [:]
        var nullDevice: FileDescriptor?
    }

    /// /dev/null, opened once and shared by every command as its stdin.
    private static func nullDevice() throws(SystemCallError) -> FileDescriptor {
        if let known = cache.withLock({ $0.nullDevice }) { return known }
        let opened = try FileDescriptor.openNullDevice(writable: false).movedAboveStandardStreams()
        let kept = cache.withLock { cache -> FileDescriptor? in
            if let known = cache.nullDevice { return known }
            cache.nullDevice = opened
            return nil
        }
        if let kept {
            opened.close()
            return kept
        }
        return opened
    }

    /// Finds `name` the way a shell does: as a path if it contains a slash, else in `PATH`
    /// (remembered, as shells hash commands).
    static func resolve(_ name: String) -> String? {
        if name.contains("/") { return name }
        if let known = cache.withLock({ $0.resolved[name] }) { return known }
        guard let found = search(name) else { return nil }
        cache.withLock { $0.resolved[name] = found }
        return found
    }

    /// The worker's environment as C strings, built once: every command gets the same.
    private static let environmentBlock = CStringArray(currentEnvironment())

    private static func search(_ name: String) -> String? {
        let path = WorkerProcess.environmentValue("PATH") ?? "/usr/local/bin:/usr/bin:/bin"
        for directory in path.split(separator: ":", omittingEmptySubsequences: false) {
            let candidate = (directory.isEmpty ? "." : String(directory)) + "/" + name
            if access(candidate, X_OK) == 0 { return candidate }
        }
        return nil
    }

    /// Spawns `arguments` (no shell), with stdin from /dev/null, in the calling process's
    /// group, and reads its stdout and stderr until it exits; blocks the calling thread (a
    /// worker's own job thread).
    ///
    /// - Parameter stream: If given, output is passed to it as it arrives, whole lines at a
    ///   time (index 0 stdout, 1 stderr), instead of being returned in the outcome.
    static func run(_ arguments: [String], stream: ((Int, UnsafeRawBufferPointer) -> Void)? = nil) throws(SpawnFailure) -> Outcome {
        guard let name = arguments.first else {
            return Outcome(status: .exited(127), standardOutput: [], standardError: Array("pool: empty command\n".utf8))
        }
        guard let executable = resolve(name) else {
            return Outcome(status: .exited(127), standardOutput: [], standardError: Array("pool: \(name): command not found\n".utf8))
        }
        func fail(_ error: SystemCallError) -> SpawnFailure { SpawnFailure(executable: executable, call: error.call, errno: error.errno) }
        var created: [FileDescriptor] = []
        let input: FileDescriptor
        let output: (readEnd: FileDescriptor, writeEnd: FileDescriptor)
        let errors: (readEnd: FileDescriptor, writeEnd: FileDescriptor)
        do {
            input = try nullDevice()
            output = try FileDescriptor.pipe()
            created += [output.readEnd, output.writeEnd]
            errors = try FileDescriptor.pipe()
        } catch {
            for descriptor in created { descriptor.close() }
            throw fail(error)
        }
        let child: ChildProcess
        do {
            child = try spawnProcess(
                executable: executable, arguments: Array(arguments.dropFirst()), environment: environmentBlock,
                standardInput: input, standardOutput: output.writeEnd, standardError: errors.writeEnd,
                newProcessGroup: false)
        } catch {
            for descriptor in [output.readEnd, output.writeEnd, errors.readEnd, errors.writeEnd] { descriptor.close() }
            if error.errno.rawValue == ENOENT || error.errno.rawValue == EACCES {
                let message = "pool: \(name): \(error.errno)\n"
                return Outcome(status: .exited(error.errno.rawValue == ENOENT ? 127 : 126), standardOutput: [], standardError: Array(message.utf8))
            }
            throw error
        }
        var captured = CapturedOutput(stream: stream)
        let readEnds = [output.readEnd, errors.readEnd]
        if let exit = child.exitDescriptor, (try? output.readEnd.setNonBlocking()) != nil, (try? errors.readEnd.setNonBlocking()) != nil {
            // Keeping the write ends open means the pipes never hang up, so the thread wakes
            // for output and once for the exit (the pidfd), not for each pipe's end and again
            // for the exit: two sleeps fewer per command. Output written after the command
            // exits (by something it left running in the background) is not collected.
            captureUntilExit(readEnds, exit: exit, into: &captured)
            output.writeEnd.close()
            errors.writeEnd.close()
            for (index, descriptor) in readEnds.enumerated() {
                drain(descriptor, into: &captured, index)
                descriptor.close()
            }
        } else {
            output.writeEnd.close()
            errors.writeEnd.close()
            captureUntilEnd(readEnds, into: &captured)
        }
        captured.finish()
        let status = (try? child.reap()) ?? .exited(-1)
        child.closeExitDescriptor()
        return Outcome(status: status, standardOutput: captured.bytes[0], standardError: captured.bytes[1])
    }

    /// A command's stdout (0) and stderr (1): kept whole, or passed on line by line.
    private struct CapturedOutput {
        var bytes: [[UInt8]] = [[], []]
        let stream: ((Int, UnsafeRawBufferPointer) -> Void)?

        /// A line this long is passed on unfinished, so memory stays bounded.
        static let longestHeldLine = 1 << 20

        init(stream: ((Int, UnsafeRawBufferPointer) -> Void)?) { self.stream = stream }

        mutating func append(_ chunk: UnsafeRawBufferPointer, to index: Int) {
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
            guard let stream else { return }
            for index in bytes.indices where !bytes[index].isEmpty {
                bytes[index].withUnsafeBytes { stream(index, $0) }
                bytes[index].removeAll()
            }
        }
    }

    /// Reads both pipes as output arrives until the pidfd `exit` says the command has exited.
    private static func captureUntilExit(_ readEnds: [FileDescriptor], exit: FileDescriptor, into captured: inout CapturedOutput) {
        var entries = (readEnds + [exit]).map { pollfd(fd: $0.rawValue, events: Int16(POLLIN), revents: 0) }
        while true {
            for index in entries.indices { entries[index].revents = 0 }
            if poll(&entries, nfds_t(entries.count), -1) < 0 {
                if errno == EINTR { continue }
                return  // cannot wait any more: collect what there is and reap
            }
            for index in readEnds.indices where entries[index].revents != 0 {
                drain(readEnds[index], into: &captured, index)
            }
            if entries[readEnds.count].revents != 0 { return }
        }
    }

    /// Reads what a non-blocking pipe holds now, until it would block or ends.
    private static func drain(_ descriptor: FileDescriptor, into captured: inout CapturedOutput, _ index: Int) {
        withUnsafeTemporaryAllocation(byteCount: 64 * 1024, alignment: 1) { chunk in
            while case .transferred(let count)? = try? descriptor.read(into: chunk), count > 0 {
                captured.append(UnsafeRawBufferPointer(rebasing: chunk[0..<count]), to: index)
            }
        }
    }

    /// Reads both (blocking) pipes until both end: where there is no pidfd.
    private static func captureUntilEnd(_ readEnds: [FileDescriptor], into captured: inout CapturedOutput) {
        var open = Array(readEnds.enumerated())
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while !open.isEmpty {
            var entries = open.map { pollfd(fd: $0.element.rawValue, events: Int16(POLLIN), revents: 0) }
            if poll(&entries, nfds_t(entries.count), -1) < 0 {
                if errno == EINTR { continue }
                // Cannot wait any more: close our ends (so the command cannot block writing to
                // a full pipe) and reap it.
                for (_, descriptor) in open { descriptor.close() }
                return
            }
            var stillOpen: [(offset: Int, element: FileDescriptor)] = []
            for (position, entry) in open.enumerated() {
                guard entries[position].revents != 0 else {
                    stillOpen.append(entry)
                    continue
                }
                let count = chunk.withUnsafeMutableBytes { (try? entry.element.readWaiting(into: $0)) ?? 0 }
                if count > 0 {
                    chunk.withUnsafeBytes { captured.append(UnsafeRawBufferPointer(rebasing: $0[0..<count]), to: entry.offset) }
                    stillOpen.append(entry)
                } else {
                    entry.element.close()
                }
            }
            open = stillOpen
        }
    }
}
