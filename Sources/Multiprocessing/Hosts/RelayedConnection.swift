import Synchronization

/// What the event loop and a host's relay thread share about one remote worker: its pid there,
/// how it ended, and whether its host was lost under it.
final class RelayedChannel: Sendable {
    let number: UInt32
    private let state = Mutex(State())

    struct State {
        var processID: Int32 = 0
        var status: TerminationStatus?
        /// Why the host was lost, when the worker ended with it.
        var hostLoss: String?
    }

    init(number: UInt32) { self.number = number }

    var snapshot: State { state.withLock { $0 } }

    func started(processID: Int32) { state.withLock { $0.processID = processID } }
    func exited(_ status: TerminationStatus) { state.withLock { $0.status = status } }
    /// The host was lost: a worker that had not exited (or, with `evenIfExited`, whose last
    /// bytes were lost) ended with it.
    func lost(because reason: String, evenIfExited: Bool = false) {
        state.withLock {
            if $0.status == nil || evenIfExited { $0.hostLoss = reason }
        }
    }
}

/// A worker on another machine, as the event loop sees it: three local pipes that a host's
/// relay thread (``HostLink``) joins to the worker's streams over the host's one connection.
///
/// The relay closes the worker's output and diagnostics after the last bytes the worker wrote
/// and its exit status (or after its host was lost), so the end of both streams stands for its
/// exit, as for a local worker without a pidfd.
final class RelayedConnection: WorkerConnection {
    let executablePath: String
    let link: HostLink
    let channel: RelayedChannel
    private var input: FileDescriptor?
    private var output: FileDescriptor?
    private var diagnostics: FileDescriptor?

    var processID: Int32 { channel.snapshot.processID }
    var outputEnded: Bool { output == nil }
    var diagnosticsEnded: Bool { diagnostics == nil }
    var hostName: String? { link.name }
    var hostLoss: String? { channel.snapshot.hostLoss }

    /// Asks `link` to start a worker with `environment` on its host.
    ///
    /// - Throws: ``SystemCallError`` if the pipes cannot be made.
    init(link: HostLink, channel: UInt32, executablePath: String, environment: [String]) throws(SystemCallError) {
        self.link = link
        self.executablePath = executablePath
        self.channel = RelayedChannel(number: channel)
        let ends = RelayEnds()
        let inputPipe = try FileDescriptor.pipe(nonBlocking: true)
        let outputPipe: FileDescriptor.Pipe
        do {
            outputPipe = try FileDescriptor.pipe(nonBlocking: true)
        } catch {
            inputPipe.close()
            throw error
        }
        let diagnosticsPipe: FileDescriptor.Pipe
        do {
            diagnosticsPipe = try FileDescriptor.pipe(nonBlocking: true)
        } catch {
            inputPipe.close()
            outputPipe.close()
            throw error
        }
        inputPipe.writeEnd.trySetPipeBufferSize(1 << 20)
        outputPipe.writeEnd.trySetPipeBufferSize(1 << 20)
        input = .some(inputPipe.writeEnd)
        output = .some(outputPipe.readEnd)
        diagnostics = .some(diagnosticsPipe.readEnd)
        ends.input = .some(inputPipe.readEnd)
        ends.output = .some(outputPipe.writeEnd)
        ends.diagnostics = .some(diagnosticsPipe.writeEnd)
        link.open(self.channel, environment: environment, ends: ends)
    }

    deinit {
        input.take()?.close()
        output.take()?.close()
        diagnostics.take()?.close()
    }

    func register(in pollSet: inout PollSet, wantsToWrite: Bool) -> ConnectionSlots {
        var slots = ConnectionSlots()
        if output != nil { slots.output = pollSet.add(output!, .readable) }
        if diagnostics != nil { slots.diagnostics = pollSet.add(diagnostics!, .readable) }
        if wantsToWrite && input != nil { slots.input = pollSet.add(input!, .writable) }
        return slots
    }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws(SystemCallError) -> FileDescriptor.IOResult {
        guard output != nil else { return .transferred(0) }
        let result = Result { () throws(SystemCallError) in try output!.read(into: buffer) }
        if case .success(.transferred(0)) = result { output.take()?.close() }
        if case .failure = result { output.take()?.close() }
        return try result.get()
    }

    func readDiagnostics(into buffer: UnsafeMutableRawBufferPointer) throws(SystemCallError) -> FileDescriptor.IOResult {
        guard diagnostics != nil else { return .transferred(0) }
        let result = Result { () throws(SystemCallError) in try diagnostics!.read(into: buffer) }
        if case .success(.transferred(0)) = result { diagnostics.take()?.close() }
        if case .failure = result { diagnostics.take()?.close() }
        return try result.get()
    }

    func write(_ buffer: UnsafeRawBufferPointer) throws(SystemCallError) -> FileDescriptor.IOResult {
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
        link.signal(channel.number, signal)
    }

    func finish() -> TerminationStatus {
        input.take()?.close()
        output.take()?.close()
        diagnostics.take()?.close()
        // A worker whose host was lost has no status; it was lost with its host, and the
        // loop treats it as such (``hostLoss``). SIGKILL stands for it in reports.
        return channel.snapshot.status ?? .signaled(Signal.kill)
    }
}

/// The relay's ends of a remote worker's three pipes, on their way to the relay thread.
final class RelayEnds: @unchecked Sendable {
    // @unchecked: filled on the loop's thread, then handed to the relay thread through the
    // link's lock and touched only there.
    var input: FileDescriptor?
    var output: FileDescriptor?
    var diagnostics: FileDescriptor?

    deinit {
        input.take()?.close()
        output.take()?.close()
        diagnostics.take()?.close()
    }
}
