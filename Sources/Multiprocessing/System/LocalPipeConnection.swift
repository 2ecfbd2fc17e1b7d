#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A worker spawned on this machine, reached through pipes: its stdin carries jobs, its stdout
/// results, its stderr diagnostics, and a pidfd says when it has exited.
final class LocalPipeConnection: WorkerConnection {
    let executablePath: String
    private var process: ChildProcess
    /// Our end of the worker's stdin (non-blocking); nil once closed.
    private var input: FileDescriptor?
    /// Our end of the worker's stdout (non-blocking); nil once it has ended.
    private var output: FileDescriptor?
    /// Our end of the worker's stderr (non-blocking); nil once it has ended.
    private var diagnostics: FileDescriptor?

    var processID: Int32 { process.pid }
    var outputEnded: Bool { output == nil }
    var diagnosticsEnded: Bool { diagnostics == nil }
    /// Whether its exit is seen through a pidfd (``register(in:wantsToWrite:)`` adds it).
    var hasExitEvent: Bool { process.exitDescriptor != nil }

    /// Spawns `executable` with three fresh pipes as its standard streams.
    ///
    /// - Parameters:
    ///   - executable: The program's path.
    ///   - arguments: Its arguments, without the program's name.
    ///   - environment: Its whole environment, as `KEY=VALUE` strings.
    /// - Throws: ``SpawnFailure`` naming the call that failed and its error number.
    init(executable: String, arguments: [String], environment: [String]) throws(SpawnFailure) {
        let pipes: StandardPipes
        do {
            pipes = try StandardPipes()
        } catch {
            throw SpawnFailure(executable: executable, call: error.call, errno: error.errno)
        }
        var child: ChildProcess? = nil
        var failure: SpawnFailure? = nil
        do {
            // Only our ends are non-blocking; the worker's stay blocking, as a program expects.
            try pipes.input.writeEnd.setNonBlocking()
            try pipes.output.readEnd.setNonBlocking()
            try pipes.diagnostics.readEnd.setNonBlocking()
        } catch {
            failure = SpawnFailure(executable: executable, call: error.call, errno: error.errno)
        }
        // Larger pipes mean fewer wake-ups for big batches; the default still works.
        pipes.input.writeEnd.trySetPipeBufferSize(1 << 20)
        pipes.output.writeEnd.trySetPipeBufferSize(1 << 20)
        if failure == nil {
            let environmentBlock = CStringArray(environment)
            do {
                child = .some(try spawnProcess(
                    executable: executable, arguments: arguments, environment: environmentBlock,
                    standardInput: pipes.input.readEnd, standardOutput: pipes.output.writeEnd, standardError: pipes.diagnostics.writeEnd))
            } catch {
                failure = error
            }
            environmentBlock.deallocate()
        }
        // The child has its copies; keeping ours would hide its exit (no end of file).
        pipes.input.readEnd.close()
        pipes.output.writeEnd.close()
        pipes.diagnostics.writeEnd.close()
        guard let spawned = child.take() else {
            pipes.input.writeEnd.close()
            pipes.output.readEnd.close()
            pipes.diagnostics.readEnd.close()
            throw failure!
        }
        process = spawned
        executablePath = executable
        input = .some(pipes.input.writeEnd)
        output = .some(pipes.output.readEnd)
        diagnostics = .some(pipes.diagnostics.readEnd)
    }

    /// The three pipes that become a worker's standard streams.
    private struct StandardPipes: ~Copyable {
        var input: FileDescriptor.Pipe
        var output: FileDescriptor.Pipe
        var diagnostics: FileDescriptor.Pipe

        init() throws(SystemCallError) {
            let input = try FileDescriptor.pipe()
            let output: FileDescriptor.Pipe
            do {
                output = try FileDescriptor.pipe()
            } catch {
                input.readEnd.close()
                input.writeEnd.close()
                throw error
            }
            do {
                diagnostics = try FileDescriptor.pipe()
            } catch {
                input.readEnd.close()
                input.writeEnd.close()
                output.readEnd.close()
                output.writeEnd.close()
                throw error
            }
            self.input = input
            self.output = output
        }
    }

    deinit {
        input.take()?.close()
        output.take()?.close()
        diagnostics.take()?.close()
        process.closeExitDescriptor()
    }

    func register(in pollSet: inout PollSet, wantsToWrite: Bool) -> ConnectionSlots {
        var slots = ConnectionSlots()
        if output != nil { slots.output = pollSet.add(output!, .readable) }
        if diagnostics != nil { slots.diagnostics = pollSet.add(diagnostics!, .readable) }
        if wantsToWrite && input != nil { slots.input = pollSet.add(input!, .writable) }
        if process.exitDescriptor != nil { slots.exit = pollSet.add(process.exitDescriptor!, .readable) }
        return slots
    }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws(SystemCallError) -> FileDescriptor.IOResult {
        // The hot path of every round trip: a plain borrow of the descriptor, no inout access.
        guard output != nil else { return .transferred(0) }
        let (result, ended) = Self.read(output!, into: buffer)
        if ended { output.take()?.close() }
        return try result.get()
    }

    func readDiagnostics(into buffer: UnsafeMutableRawBufferPointer) throws(SystemCallError) -> FileDescriptor.IOResult {
        guard diagnostics != nil else { return .transferred(0) }
        let (result, ended) = Self.read(diagnostics!, into: buffer)
        if ended { diagnostics.take()?.close() }
        return try result.get()
    }

    /// One read; `ended` when the stream is over (its end, or a failure), so its owner closes it.
    private static func read(
        _ descriptor: borrowing FileDescriptor, into buffer: UnsafeMutableRawBufferPointer
    ) -> (result: Result<FileDescriptor.IOResult, SystemCallError>, ended: Bool) {
        do {
            let result = try descriptor.read(into: buffer)
            return (.success(result), result == .transferred(0))
        } catch {
            return (.failure(error), true)
        }
    }

    func write(_ buffer: UnsafeRawBufferPointer) throws(SystemCallError) -> FileDescriptor.IOResult {
        // Once closed, the descriptor number may already belong to someone else.
        guard input != nil else { throw SystemCallError(call: "write", errno: .brokenPipe) }
        return try input!.write(buffer)
    }

    func write(gathering buffers: [UnsafeRawBufferPointer]) throws(SystemCallError) -> FileDescriptor.IOResult {
        guard input != nil else { throw SystemCallError(call: "writev", errno: .brokenPipe) }
        return try input!.write(gathering: buffers)
    }

    func closeInput() {
        input.take()?.close()
    }

    func signal(_ signal: CInt) {
        process.signalGroup(signal)
    }

    func finish() -> TerminationStatus {
        // It has exited (its pidfd said so, or both its streams ended): this does not block
        // for long.
        let status = (try? process.reap()) ?? .exited(-1)
        // A job's processes live in the worker's group; none may outlive the worker (a group
        // id stays valid while any member lives, so this reaches no one else).
        process.killRemainingGroupMembers()
        input.take()?.close()
        output.take()?.close()
        diagnostics.take()?.close()
        process.closeExitDescriptor()
        return status
    }
}
