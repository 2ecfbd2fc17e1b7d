/// A worker binary in agent mode: started once per remote host (one `ssh` session, one
/// Slurm job step), it spawns that host's workers with the same `posix_spawn` path a local pool
/// uses and relays their streams over its own stdin and stdout as envelopes
/// (``AgentProtocol``).
///
/// So on the host a timeout or a cancel signals the worker's process group, a crash ends one
/// worker, and a worker's memory limit is set there. The agent ends everything it started and
/// exits when its input ends (the coordinator died, or the connection closed: no SIGHUP reaches
/// a command without a terminal) or when no heartbeat has come for the coordinator's timeout
/// (the network was cut, which gives no end of file).
///
/// It runs on one thread of its own, blocking in `poll`; it needs no Swift concurrency.
final class Agent: @unchecked Sendable {
    // @unchecked: built on the serving task, then touched only by the agent's own thread.
    private struct HostedWorker {
        let connection: LocalPipeConnection
        /// Bytes the coordinator sent that the worker has not taken yet.
        var pendingInput = PendingBytes()
        /// The coordinator closed this worker's input; it is closed once `pendingInput` is written.
        var inputEndRequested = false
    }

    private var input: FileDescriptor?
    private var output: FileDescriptor?
    /// The transport's stdin, when the envelopes travel on a connection back to the
    /// coordinator: its end means the coordinator is gone, as the connection's would.
    private var watched: FileDescriptor?
    private var reader = EnvelopeReader(acceptsAgentKinds: false)
    private var outgoing = PendingBytes()
    private var writer = EnvelopeWriter()
    private var workers: [UInt32: HostedWorker] = [:]
    /// Ends the agent when nothing has come from the coordinator for this long; set by its hello.
    private var heartbeatTimeout: Duration?
    private var lastHeard: ContinuousClock.Instant
    private let clock = ContinuousClock()
    private let executable: String
    private let arguments: [String]
    private let baseEnvironment: [String]
    private var buffer = [UInt8](repeating: 0, count: 256 * 1024)

    /// Stop reading workers' output while this much waits to go to the coordinator: the
    /// connection is the bottleneck, and the workers' pipes then hold the rest.
    private static let outgoingLimit = 8 << 20

    private init(input: consuming FileDescriptor, output: consuming FileDescriptor, watching: consuming FileDescriptor?, executable: String) {
        self.input = .some(input)
        self.output = .some(output)
        self.watched = watching
        self.executable = executable
        arguments = Array(CommandLine.arguments.dropFirst())
        baseEnvironment = currentEnvironment().filter { !$0.hasPrefix("SWIFT_MULTIPROCESSING_") }
        lastHeard = clock.now
    }

    deinit {
        input.take()?.close()
        output.take()?.close()
        watched.take()?.close()
    }

    /// Reads the secret line from `secretSource` (the transport's stdin), connects to
    /// `ADDRESS PORT` and sends the secret back first, proving the connection is this agent.
    private static func callBack(_ destination: String, secretFrom secretSource: borrowing FileDescriptor) throws(SystemCallError) -> FileDescriptor {
        let parts = destination.split(separator: " ")
        guard parts.count == 2, let port = Int(parts[1]) else {
            throw SystemCallError(call: "read \(AgentProtocol.callbackEnvironmentKey) '\(destination)'", errno: .invalidArgument)
        }
        var secret: [UInt8] = []
        var byte = [UInt8](repeating: 0, count: 1)
        while secret.last != UInt8(ascii: "\n") && secret.count < 256 {
            _ = try secretSource.waitUntilReadable(timeoutMilliseconds: 60_000)
            let result = byte.withUnsafeMutableBytes { bytes in
                Result { () throws(SystemCallError) in try secretSource.read(into: bytes) }
            }
            if case .transferred(let count) = try result.get() {
                if count == 0 { throw SystemCallError(call: "read the secret from stdin", errno: .brokenPipe) }
                secret.append(byte[0])
            }
        }
        let connection = try Network.connect(to: String(parts[0]), port: port)
        let sent = secret.withUnsafeBytes { bytes in
            Result { () throws(SystemCallError) in try connection.writeAll(bytes) }
        }
        if case .failure(let error) = sent {
            connection.close()
            throw error
        }
        return connection
    }

    /// Runs this process as an agent: never returns.
    ///
    /// - Parameter coordinatorVersion: The protocol version the coordinator asked for.
    static func serve(coordinatorVersion: String) async -> Never {
        guard coordinatorVersion == String(AgentProtocol.version) else {
            // Said before any byte of the stream, so the coordinator reports this line.
            WorkerProcess.writeDiagnostic("agent: this worker binary speaks protocol version \(AgentProtocol.version), the coordinator version \(coordinatorVersion): install the same version on both sides")
            WorkerProcess.exitProcess(3)
        }
        guard let executable = currentExecutablePath() else {
            WorkerProcess.writeDiagnostic("agent: cannot find this program's own path to start workers")
            WorkerProcess.exitProcess(3)
        }
        let agent: Agent
        do {
            let streams = try WorkerProcess.takeProtocolStreams()
            if let callback = WorkerProcess.environmentValue(AgentProtocol.callbackEnvironmentKey) {
                streams.output.close()
                let connection: FileDescriptor
                do {
                    connection = try callBack(callback, secretFrom: streams.input)
                } catch {
                    streams.input.close()
                    throw error
                }
                let input: FileDescriptor
                do {
                    try connection.setNonBlocking()
                    try streams.input.setNonBlocking()
                    input = try connection.duplicate()
                } catch {
                    connection.close()
                    streams.input.close()
                    throw error
                }
                agent = Agent(input: input, output: connection, watching: streams.input, executable: executable)
            } else {
                do {
                    try streams.input.setNonBlocking()
                    try streams.output.setNonBlocking()
                } catch {
                    streams.input.close()
                    streams.output.close()
                    throw error
                }
                agent = Agent(input: streams.input, output: streams.output, watching: nil, executable: executable)
            }
        } catch {
            WorkerProcess.writeDiagnostic("agent: cannot set up its streams: \(error)")
            WorkerProcess.exitProcess(3)
        }
        do {
            try startOwnedThread(name: "mp-agent") {
                blockBrokenPipeSignal()
                agent.run()
            }
        } catch {
            WorkerProcess.writeDiagnostic("agent: cannot start its thread: \(error)")
            WorkerProcess.exitProcess(3)
        }
        // The thread ends the process; this task only waits.
        while true { try? await Task.sleep(for: .seconds(3600)) }
    }

    private func run() -> Never {
        writer.writePreamble()
        writer.write(.agentHello, channel: 0) { payload in
            payload.writeVarint(Int(ThisProcess.id))
            payload.writeString(ThisProcess.hostName)
        }
        takeWritten()
        var pollSet = PollSet()
        var slots: [(channel: UInt32, slots: ConnectionSlots)] = []
        while true {
            pollSet.removeAll()
            slots.removeAll(keepingCapacity: true)
            let inputSlot = pollSet.add(input!, .readable)
            let watchedSlot = watched == nil ? nil : pollSet.add(watched!, .readable)
            let outputSlot = outgoing.isEmpty ? nil : pollSet.add(output!, .writable)
            let readsWorkers = outgoing.count < Self.outgoingLimit
            for (channel, worker) in workers {
                var registered = worker.connection.register(in: &pollSet, wantsToWrite: !worker.pendingInput.isEmpty)
                if !readsWorkers {
                    // Leave their output in their pipes until the coordinator catches up.
                    if let index = registered.output { pollSet.ignore(at: index) }
                    if let index = registered.diagnostics { pollSet.ignore(at: index) }
                    registered.output = nil
                    registered.diagnostics = nil
                }
                slots.append((channel, registered))
            }
            do {
                _ = try pollSet.wait(timeoutMilliseconds: pollTimeout())
            } catch {
                end(because: "cannot wait for events: \(error)")
            }
            if !pollSet.events(at: inputSlot).isEmpty { readCoordinator() }
            if let watchedSlot, !pollSet.events(at: watchedSlot).isEmpty { readWatched() }
            if let outputSlot, !pollSet.events(at: outputSlot).isEmpty { flushOutgoing() }
            for (channel, registered) in slots {
                guard workers[channel] != nil else { continue }
                if let index = registered.output, !pollSet.events(at: index).isEmpty { relayOutput(of: channel, diagnostics: false) }
                if let index = registered.diagnostics, !pollSet.events(at: index).isEmpty { relayOutput(of: channel, diagnostics: true) }
                if let index = registered.input, !pollSet.events(at: index).isEmpty { flushInput(of: channel) }
                let exited: Bool
                if let index = registered.exit {
                    exited = !pollSet.events(at: index).isEmpty
                } else {
                    exited = workers[channel]!.connection.outputEnded && workers[channel]!.connection.diagnosticsEnded
                }
                if exited { reportExit(of: channel) }
            }
            if let heartbeatTimeout, clock.now - lastHeard > heartbeatTimeout {
                end(because: "nothing came from the coordinator for \(heartbeatTimeout) (its heartbeat timeout): the connection is lost")
            }
            takeWritten()
            if !outgoing.isEmpty { flushOutgoing() }
        }
    }

    private func pollTimeout() -> Int32 {
        guard let heartbeatTimeout else { return -1 }
        return PollSet.timeoutMilliseconds(until: lastHeard + heartbeatTimeout, now: clock.now)
    }

    // MARK: From the coordinator

    private func readCoordinator() {
        var result = Result<FileDescriptor.IOResult, SystemCallError>.success(.wouldBlock)
        // Straight into the reader's buffer: the bytes are not copied on their way.
        _ = reader.fill(upTo: buffer.count) { room in
            result = Result { () throws(SystemCallError) in try input!.read(into: room) }
            guard case .success(.transferred(let count)) = result else { return 0 }
            return count
        }
        // The end of the input is how a coordinator that died, or closed the connection, is seen.
        guard case .success(let outcome) = result else { end(because: nil) }
        guard case .transferred(let count) = outcome else { return }
        if count == 0 { end(because: nil) }
        lastHeard = clock.now
        do {
            while try reader.next({ kind, channel, payload in try handle(kind, channel: channel, payload) }) != nil {}
        } catch {
            end(because: "the coordinator broke the agent protocol: \(error)")
        }
    }

    /// Reads and drops what comes on the transport's stdin; ends the agent at its end.
    private func readWatched() {
        let result = buffer.withUnsafeMutableBytes { bytes in
            Result { () throws(SystemCallError) in try watched!.read(into: bytes) }
        }
        switch result {
        case .success(.transferred(0)), .failure: end(because: nil)
        default: break
        }
    }

    private func handle(_ kind: EnvelopeKind, channel: UInt32, _ payload: UnsafeRawBufferPointer) throws {
        var fields = WireReader(payload)
        switch kind {
        case .hello:
            let milliseconds = try fields.readCount("heartbeat timeout", limit: 86_400_000)
            heartbeatTimeout = milliseconds > 0 ? .milliseconds(milliseconds) : nil
        case .open:
            guard channel != 0, workers[channel] == nil else { throw WireError("open of channel \(channel), which is in use") }
            let count = try fields.readCount("environment entry count", limit: 4096)
            var additions: [String] = []
            for _ in 0..<count { additions.append(try fields.readString("environment entry")) }
            let keys = Set(additions.map { $0.prefix { $0 != "=" } })
            var environment = baseEnvironment.filter { !keys.contains($0.prefix { $0 != "=" }) }
            environment += additions
            environment.append("\(WireProtocol.parentEnvironmentKey)=\(ThisProcess.id)")
            environment.append("\(AgentProtocol.remoteWorkerEnvironmentKey)=1")
            open(channel, environment: environment)
        case .input:
            guard let connection = workers[channel]?.connection else { return }  // it exited; its exit is on its way
            // Written at once when nothing waits: only what the pipe does not take is copied.
            if !workers[channel]!.pendingInput.send([payload], to: connection) {
                // The worker closed its stdin or died: its exit says what became of it.
                workers[channel]!.pendingInput.removeAll()
                connection.closeInput()
            }
        case .closeInput:
            guard workers[channel] != nil else { return }
            workers[channel]!.inputEndRequested = true
            flushInput(of: channel)
        case .signal:
            let signal = try fields.readCount("signal", limit: 64)
            workers[channel]?.connection.signal(CInt(signal))
        case .ping:
            writer.write(.pong, channel: 0, payload: payload)
        default:
            throw WireError("envelope kind \(kind) is not one a coordinator sends")
        }
    }

    private func open(_ channel: UInt32, environment: [String]) {
        do {
            let connection = try LocalPipeConnection(executable: executable, arguments: arguments, environment: environment)
            workers[channel] = HostedWorker(connection: connection)
            writer.write(.opened, channel: channel) { $0.writeVarint(Int(connection.processID)) }
        } catch {
            writer.write(.openFailed, channel: channel) { payload in
                payload.writeString(error.call)
                payload.writeVarint(Int(error.errno.rawValue))
            }
        }
    }

    private func flushInput(of channel: UInt32) {
        guard var worker = workers[channel] else { return }
        if !worker.pendingInput.isEmpty && !worker.pendingInput.flush(to: worker.connection) {
            // The worker closed its stdin or died: its exit says what became of it.
            worker.pendingInput.removeAll()
            worker.connection.closeInput()
        }
        if worker.inputEndRequested && worker.pendingInput.isEmpty { worker.connection.closeInput() }
        workers[channel] = worker
    }

    // MARK: To the coordinator

    /// Sends what the worker wrote; false if there was nothing.
    @discardableResult
    private func relayOutput(of channel: UInt32, diagnostics: Bool) -> Bool {
        guard let connection = workers[channel]?.connection else { return false }
        let result = buffer.withUnsafeMutableBytes { bytes in
            Result { () throws(SystemCallError) in
                diagnostics ? try connection.readDiagnostics(into: bytes) : try connection.read(into: bytes)
            }
        }
        guard case .success(.transferred(let count)) = result, count > 0 else { return false }
        // After the envelopes that wait, straight from the buffer: only what the stream does
        // not take now is copied.
        takeWritten()
        let sent = buffer.withUnsafeBytes { bytes in
            EnvelopeWriter.sendPieces(diagnostics ? .diagnostics : .output, channel: channel, UnsafeRawBufferPointer(rebasing: bytes[..<count])) {
                outgoing.send($0, to: output!)
            }
        }
        if !sent { end(because: nil) }  // the connection is gone
        return true
    }

    /// Sends what the worker wrote last, then how it ended, and forgets it.
    private func reportExit(of channel: UInt32) {
        guard let worker = workers[channel] else { return }
        for diagnostics in [false, true] {
            // Its pipes may still hold its last words; a process it started may hold them open,
            // so read until they would block rather than until their end.
            while !(diagnostics ? worker.connection.diagnosticsEnded : worker.connection.outputEnded) {
                if !relayOutput(of: channel, diagnostics: diagnostics) { break }
            }
        }
        let status = worker.connection.finish()
        workers[channel] = nil
        writer.write(.exited, channel: channel) { payload in
            switch status {
            case .exited(let code):
                payload.writeByte(0)
                payload.writeVarint(UInt64(UInt32(bitPattern: code)))
            case .signaled(let signal):
                payload.writeByte(1)
                payload.writeVarint(UInt64(UInt32(bitPattern: signal)))
            }
        }
    }

    private func takeWritten() {
        guard !writer.bytes.isEmpty else { return }
        outgoing.take(&writer.bytes)
    }

    private func flushOutgoing() {
        takeWritten()
        guard !outgoing.flush(to: output!) else { return }
        end(because: nil)  // the connection is gone
    }

    /// Ends every worker's process group and the agent.
    ///
    /// - Parameter reason: Said on stderr; nil when the coordinator simply went away.
    private func end(because reason: String?) -> Never {
        if let reason { WorkerProcess.writeDiagnostic("agent: \(reason); stopping its \(workers.count) workers") }
        // Nobody is left to want their results: SIGKILL, not the polite signal.
        for worker in workers.values { worker.connection.signal(Signal.kill) }
        for worker in workers.values { _ = worker.connection.finish() }
        workers.removeAll()
        WorkerProcess.exitProcess(0)
    }
}
