import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One remote host's connection: the transport process (`ssh`, `srun`, a launcher) that runs
/// the agent there, and a relay thread that joins each of the host's workers
/// (``RelayedConnection``) to its envelopes on that one connection.
///
/// The relay sends a heartbeat every third of `heartbeatTimeout` and declares the host lost
/// when nothing has come back for the whole timeout (a cut network gives no end of file), or
/// when the transport ends. Then every worker there ends as lost with the host, and the relay
/// connects again after a backoff (1 s, doubling, at most 30 s) until the pool stops.
final class HostLink: @unchecked Sendable {
    // @unchecked: `shared` is behind its lock; everything else is immutable or touched only
    // on the relay thread.

    /// Where the connection is.
    enum Status: Equatable, Sendable {
        /// The first connection is being made.
        case connecting
        /// The agent answered; workers can be started.
        case up
        /// The connection failed or was lost, for `reason`; `failedAttempts` connections have
        /// failed since (0 right after losing one that worked).
        case down(reason: String, failedAttempts: Int)
        /// The pool stopped it.
        case stopped
    }

    let name: String
    let slots: Int
    /// The transport's command line, program first.
    let command: [String]
    let heartbeatTimeout: Duration
    let connectTimeout: Duration
    private let shared = Mutex(Shared())
    private let waker: Waker
    /// Wakes the event loop when the status changes.
    private let statusChanged: @Sendable () -> Void
    /// Tells the pool's user of ups and downs.
    private let report: @Sendable (Status, _ retryIn: Duration) -> Void
    private let clock = ContinuousClock()

    private struct Shared {
        var status = Status.connecting
        var commands: [Command] = []
        var stopRequested = false
        var relayStarted = false
        var relayEnded = false
    }

    private enum Command {
        case open(RelayedChannel, environment: [String], ends: RelayEnds)
        case signal(UInt32, CInt)
    }

    init(name: String, slots: Int, command: [String], heartbeatTimeout: Duration, connectTimeout: Duration,
         statusChanged: @escaping @Sendable () -> Void,
         report: @escaping @Sendable (Status, _ retryIn: Duration) -> Void = { _, _ in }) throws(SystemCallError) {
        self.report = report
        self.name = name
        self.slots = slots
        self.command = command
        self.heartbeatTimeout = heartbeatTimeout
        self.connectTimeout = connectTimeout
        self.statusChanged = statusChanged
        waker = try Waker()
    }

    var status: Status { shared.withLock { $0.status } }
    var hasEnded: Bool { shared.withLock { $0.relayEnded } }
    var isStarted: Bool { shared.withLock { $0.relayStarted } }

    /// Starts the relay thread, which connects at once.
    func start() throws(SystemCallError) {
        try startOwnedThread(name: "mp-host-relay") { [self] in
            blockBrokenPipeSignal()
            Relay(link: self).run()
            shared.withLock { $0.relayEnded = true }
            waker.close()
            statusChanged()
        }
        shared.withLock { $0.relayStarted = true }
    }

    /// Asks the relay to start a worker on the host (see ``RelayedConnection``).
    func open(_ channel: RelayedChannel, environment: [String], ends: RelayEnds) {
        shared.withLock { $0.commands.append(.open(channel, environment: environment, ends: ends)) }
        waker.wake()
    }

    func signal(_ channel: UInt32, _ signal: CInt) {
        shared.withLock { $0.commands.append(.signal(channel, signal)) }
        waker.wake()
    }

    /// Ends the connection: the agent sees the end of its input, stops what is left and exits.
    /// The relay thread ends once the transport has exited (``hasEnded``).
    func stop() {
        shared.withLock { $0.stopRequested = true }
        waker.wake()
    }

    private func setStatus(_ status: Status, retryIn: Duration = .zero) {
        shared.withLock { $0.status = status }
        statusChanged()
        report(status, retryIn)
    }

    private func takeCommands() -> (commands: [Command], stop: Bool) {
        shared.withLock { shared in
            defer { shared.commands.removeAll() }
            return (shared.commands, shared.stopRequested)
        }
    }

    /// The relay thread's state and work.
    private final class Relay {
        let link: HostLink
        var channels: [UInt32: Channel] = [:]
        var buffer = [UInt8](repeating: 0, count: 256 * 1024)
        var stopping = false

        final class Channel {
            let record: RelayedChannel
            var input: FileDescriptor?
            var output: FileDescriptor?
            var diagnostics: FileDescriptor?
            var toOutput = PendingBytes()
            var toDiagnostics = PendingBytes()
            /// Set when the worker's exit arrived: the channel closes once its bytes are delivered.
            var exited = false

            init(record: RelayedChannel, ends: RelayEnds) {
                self.record = record
                input = ends.input.take()
                output = ends.output.take()
                diagnostics = ends.diagnostics.take()
            }

            deinit { closeAll() }

            func closeAll() {
                input.take()?.close()
                output.take()?.close()
                diagnostics.take()?.close()
            }

            var isDelivered: Bool { toOutput.isEmpty && toDiagnostics.isEmpty }
        }

        init(link: HostLink) { self.link = link }

        /// Transport output waiting beyond this stops the relay reading workers' input pipes.
        static let outgoingLimit = 8 << 20
        static let longestBackoff = Duration.seconds(30)

        func run() {
            var backoff = Duration.seconds(1)
            var failedAttempts = 0
            while true {
                let (reason, wasUp) = connectAndRelay()
                guard let reason else {
                    link.setStatus(.stopped)
                    return
                }
                if wasUp {
                    failedAttempts = 0
                    backoff = .seconds(1)
                } else {
                    failedAttempts += 1
                }
                link.setStatus(.down(reason: reason, failedAttempts: failedAttempts), retryIn: backoff)
                if !waitWhileDown(for: backoff, reason: reason) {
                    link.setStatus(.stopped)
                    return
                }
                backoff = min(backoff * 2, Self.longestBackoff)
            }
        }

        /// Waits out a backoff, failing opens that arrive meanwhile; false if the pool stopped.
        private func waitWhileDown(for duration: Duration, reason: String) -> Bool {
            let end = link.clock.now + duration
            while true {
                let (commands, stop) = link.takeCommands()
                for command in commands {
                    if case .open(let record, _, let ends) = command { refuse(record, ends: ends, reason: reason) }
                }
                if stop { return false }
                let remaining = end - link.clock.now
                if remaining <= .zero { return true }
                var pollSet = PollSet()
                _ = link.waker.add(to: &pollSet)
                _ = try? pollSet.wait(timeoutMilliseconds: Self.milliseconds(remaining))
                link.waker.drain()
            }
        }

        /// A worker asked for while the host is down ends at once, lost with it.
        private func refuse(_ record: RelayedChannel, ends: RelayEnds, reason: String) {
            record.lost(because: reason)
            ends.input.take()?.close()
            ends.output.take()?.close()
            ends.diagnostics.take()?.close()
        }

        /// Ends every worker of the host as lost with it.
        private func loseChannels(because reason: String) {
            for channel in channels.values {
                channel.record.lost(because: reason)
                channel.closeAll()
            }
            channels.removeAll()
        }

        /// One connection, from spawning the transport to its end.
        ///
        /// - Returns: Why it ended (nil when the pool stopped it), and whether the agent had
        ///   answered.
        private func connectAndRelay() -> (reason: String?, wasUp: Bool) {
            guard let program = CommandRunner.resolve(Array(link.command[0].utf8)) else {
                return ("cannot start \(link.command[0]): not found in PATH", false)
            }
            let transport: LocalPipeConnection
            do {
                transport = try LocalPipeConnection(
                    executable: String(decoding: program, as: UTF8.self), arguments: Array(link.command.dropFirst()),
                    environment: currentEnvironment())
            } catch {
                return ("cannot start \(link.command[0]): \(error.call) failed: \(error.errno)", false)
            }
            var session = Session(link: link, transport: transport)
            let outcome = session.relay(self)
            // The transport is done with, one way or another: make sure it exits. One whose
            // output ended is on its way out with a status worth reporting (ssh's 255, a
            // missing binary's 127); one still running is cut off.
            if !stopping && !transport.outputEnded { transport.signal(Signal.kill) }
            session.waitForExit(grace: .seconds(2))
            let status = transport.finish()
            guard let reason = outcome else { return (nil, session.agentAnswered) }
            loseChannels(because: reason)
            var described = reason
            let errors = session.errorTail()
            if !errors.isEmpty { described += ": " + errors }
            if case .exited(let code) = status, code != 0 || !session.agentAnswered {
                described += " (\(link.command[0]) exited with status \(code)\(code == 127 ? ": the worker binary was not found there" : ""))"
            } else if case .signaled(let signal) = status, signal != Signal.kill {
                described += " (\(link.command[0]) ended by \(status))"
            }
            return (described, session.agentAnswered)
        }

        fileprivate func handleCommands(_ session: inout Session) -> Bool {
            let (commands, stop) = link.takeCommands()
            for command in commands {
                switch command {
                case .open(let record, let environment, let ends):
                    guard !stopping else {
                        refuse(record, ends: ends, reason: "the pool is stopping")
                        continue
                    }
                    channels[record.number] = Channel(record: record, ends: ends)
                    session.writer.write(.open, channel: record.number) { payload in
                        payload.writeVarint(environment.count)
                        for entry in environment { payload.writeString(entry) }
                    }
                case .signal(let number, let signal):
                    guard channels[number] != nil, !(channels[number]!.exited) else { continue }
                    session.writer.write(.signal, channel: number) { $0.writeVarint(Int(signal)) }
                }
            }
            if stop && !stopping {
                stopping = true
                // The agent's cue to stop what is left and exit.
                session.closeTransportInput()
            }
            return stopping
        }

        fileprivate func relayInput(of number: UInt32, _ session: inout Session) {
            guard let channel = channels[number], channel.input != nil else { return }
            let result = buffer.withUnsafeMutableBytes { bytes in
                Result { () throws(SystemCallError) in try channel.input!.read(into: bytes) }
            }
            switch result {
            case .success(.transferred(0)), .failure:
                channel.input.take()?.close()
                session.writer.write(.closeInput, channel: number)
            case .success(.transferred(let count)):
                buffer.withUnsafeBytes { session.writer.writePieces(.input, channel: number, UnsafeRawBufferPointer(rebasing: $0[..<count])) }
            case .success(.wouldBlock):
                break
            }
        }

        fileprivate func deliver(_ channel: Channel) {
            if channel.output != nil, !channel.toOutput.isEmpty, !channel.toOutput.flush(to: channel.output!) {
                channel.output.take()?.close()
            }
            if channel.diagnostics != nil, !channel.toDiagnostics.isEmpty, !channel.toDiagnostics.flush(to: channel.diagnostics!) {
                channel.diagnostics.take()?.close()
            }
            if channel.exited && channel.isDelivered {
                channels[channel.record.number] = nil
                channel.closeAll()
            }
        }

        /// Handles one envelope from the agent.
        fileprivate func handle(_ kind: EnvelopeKind, channel number: UInt32, _ payload: UnsafeRawBufferPointer, _ session: inout Session) throws {
            var fields = WireReader(payload)
            switch kind {
            case .agentHello:
                guard !session.agentAnswered else { throw WireError("a second agent hello") }
                _ = try fields.readCount("agent pid", limit: Int(Int32.max))
                _ = try fields.readString("agent host name")
                session.agentAnswered = true
                link.setStatus(.up)
                return
            case .pong:
                return
            default:
                guard session.agentAnswered else { throw WireError("envelope \(kind) before the agent's hello") }
            }
            guard let channel = channels[number] else {
                // The pool dropped the worker already (its pipes closed); nothing to deliver.
                return
            }
            switch kind {
            case .opened:
                channel.record.started(processID: Int32(try fields.readCount("worker pid", limit: Int(Int32.max))))
            case .openFailed:
                let call = try fields.readString("failed call")
                let errno = try fields.readCount("errno", limit: Int(Int32.max))
                let message = "cannot start the worker on \(link.name): \(call) failed: \(Errno(rawValue: CInt(errno)))\n"
                channel.toDiagnostics.append(Array(message.utf8))
                channel.record.exited(.exited(127))
                channel.exited = true
            case .output:
                channel.toOutput.append(payload)
            case .diagnostics:
                channel.toDiagnostics.append(payload)
            case .exited:
                let how = try fields.readByte("exit kind")
                let code = Int32(truncatingIfNeeded: try fields.readVarint("exit code"))
                channel.record.exited(how == 0 ? .exited(code) : .signaled(code))
                channel.exited = true
            default:
                throw WireError("envelope kind \(kind) is not one an agent sends")
            }
            deliver(channel)
        }

        static func milliseconds(_ duration: Duration) -> Int32 {
            if duration <= .zero { return 0 }
            let (seconds, attoseconds) = duration.components
            return Int32(clamping: seconds * 1000 + attoseconds / 1_000_000_000_000_000 + 1)
        }
    }

    /// One connection's transport process and protocol state.
    private struct Session {
        let link: HostLink
        let transport: LocalPipeConnection
        var writer = EnvelopeWriter()
        var outgoing = PendingBytes()
        var reader = EnvelopeReader(acceptsAgentKinds: true)
        var agentAnswered = false
        var inputClosed = false
        private var errors: [UInt8] = []
        private let startedAt: ContinuousClock.Instant
        private var lastHeard: ContinuousClock.Instant
        private var nextPing: ContinuousClock.Instant
        private var pingNumber: UInt64 = 0

        init(link: HostLink, transport: LocalPipeConnection) {
            self.link = link
            self.transport = transport
            startedAt = link.clock.now
            lastHeard = startedAt
            nextPing = startedAt
        }

        var pingInterval: Duration { max(link.heartbeatTimeout / 3, .milliseconds(50)) }

        /// The last line or two of what the transport wrote on stderr.
        func errorTail() -> String {
            // Bytes, not Characters: "\r\n" is one Character, and ssh ends its lines so.
            let lines = errors.split(whereSeparator: { $0 == 0x0A || $0 == 0x0D })
            return lines.suffix(2).map { String(decoding: $0, as: UTF8.self) }.joined(separator: " / ")
        }

        mutating func closeTransportInput() {
            inputClosed = true
            flush()
            transport.closeInput()
        }

        mutating func flush() {
            if !writer.bytes.isEmpty {
                outgoing.append(writer.bytes)
                writer.bytes.removeAll(keepingCapacity: true)
            }
            guard !inputClosed || outgoing.isEmpty else { return }
            if !outgoing.isEmpty && !outgoing.flush(to: transport) { outgoing.removeAll() }
        }

        /// Relays until the connection ends.
        ///
        /// - Returns: Why it ended, or nil when the pool stopped it.
        mutating func relay(_ relay: Relay) -> String? {
            writer.writePreamble()
            let timeoutMilliseconds = Int(link.heartbeatTimeout / .milliseconds(1))
            writer.write(.hello, channel: 0) { $0.writeVarint(timeoutMilliseconds) }
            var pollSet = PollSet()
            var channelSlots: [(number: UInt32, input: Int?, output: Int?, diagnostics: Int?)] = []
            while true {
                if relay.handleCommands(&self) && transport.outputEnded { return nil }
                let now = link.clock.now
                if !agentAnswered && now - startedAt > link.connectTimeout {
                    return "no answer from the agent within \(link.connectTimeout) of connecting"
                }
                if agentAnswered && !relay.stopping && now - lastHeard > link.heartbeatTimeout {
                    return "no answer to heartbeats for \(link.heartbeatTimeout): the host or its network is down"
                }
                if agentAnswered && !inputClosed && now >= nextPing {
                    pingNumber &+= 1
                    let number = pingNumber
                    writer.write(.ping, channel: 0) { payload in
                        for shift in stride(from: 0, to: 64, by: 8) { payload.writeByte(UInt8(truncatingIfNeeded: number >> shift)) }
                    }
                    nextPing = now + pingInterval
                }
                flush()

                pollSet.removeAll()
                channelSlots.removeAll(keepingCapacity: true)
                _ = link.waker.add(to: &pollSet)
                let transportSlots = transport.register(in: &pollSet, wantsToWrite: !outgoing.isEmpty && !inputClosed)
                let readsWorkers = agentAnswered && outgoing.count < Relay.outgoingLimit && !inputClosed
                for (number, channel) in relay.channels {
                    let input = readsWorkers && channel.input != nil ? pollSet.add(channel.input!, .readable) : nil
                    let output = !channel.toOutput.isEmpty && channel.output != nil ? pollSet.add(channel.output!, .writable) : nil
                    let diagnostics = !channel.toDiagnostics.isEmpty && channel.diagnostics != nil ? pollSet.add(channel.diagnostics!, .writable) : nil
                    channelSlots.append((number, input, output, diagnostics))
                }
                var deadline = agentAnswered ? min(nextPing, lastHeard + link.heartbeatTimeout) : startedAt + link.connectTimeout
                if relay.stopping { deadline = now + .seconds(1) }
                do {
                    _ = try pollSet.wait(timeoutMilliseconds: Relay.milliseconds(deadline - link.clock.now))
                } catch {
                    return "the relay cannot wait for events: \(error)"
                }
                link.waker.drain()

                if let index = transportSlots.diagnostics, !pollSet.events(at: index).isEmpty { readErrors() }
                if let index = transportSlots.output, !pollSet.events(at: index).isEmpty {
                    if let failure = readAgent(relay) { return relay.stopping ? nil : failure }
                }
                if let index = transportSlots.input, !pollSet.events(at: index).isEmpty { flush() }
                for slots in channelSlots {
                    guard let channel = relay.channels[slots.number] else { continue }
                    if let index = slots.output, !pollSet.events(at: index).isEmpty { relay.deliver(channel) }
                    if let index = slots.diagnostics, !pollSet.events(at: index).isEmpty { relay.deliver(channel) }
                    if let index = slots.input, !pollSet.events(at: index).isEmpty { relay.relayInput(of: slots.number, &self) }
                }
                if transport.outputEnded {
                    if relay.stopping { return nil }
                    while !transport.diagnosticsEnded, readErrors() {}
                    return agentAnswered ? "the connection ended" : "the connection ended before the agent answered"
                }
            }
        }

        /// Reads what the agent sent and handles each whole envelope.
        ///
        /// - Returns: Why the connection must end, or nil.
        private mutating func readAgent(_ relay: Relay) -> String? {
            let result = relay.buffer.withUnsafeMutableBytes { bytes in
                Result { () throws(SystemCallError) in try transport.read(into: bytes) }
            }
            guard case .success(.transferred(let count)) = result else {
                if case .failure(let error) = result { return "reading from the connection failed: \(error)" }
                return nil
            }
            if count == 0 { return nil }  // its end: seen through `outputEnded`
            lastHeard = link.clock.now
            // The reader is moved out while its envelopes are handled, which write to this session.
            var reader = EnvelopeReader(acceptsAgentKinds: true)
            swap(&reader, &self.reader)
            defer { swap(&reader, &self.reader) }
            relay.buffer.withUnsafeBytes { reader.append(UnsafeRawBufferPointer(rebasing: $0[..<count])) }
            do {
                while try reader.next({ kind, channel, payload in try relay.handle(kind, channel: channel, payload, &self) }) != nil {}
            } catch {
                return "the agent broke the protocol: \(error)"
            }
            return nil
        }

        /// Keeps the last of the transport's stderr; false once it has ended.
        @discardableResult
        private mutating func readErrors() -> Bool {
            var chunk = [UInt8](repeating: 0, count: 4096)
            let result = chunk.withUnsafeMutableBytes { bytes in
                Result { () throws(SystemCallError) in try transport.readDiagnostics(into: bytes) }
            }
            guard case .success(.transferred(let count)) = result, count > 0 else { return false }
            errors.append(contentsOf: chunk[..<count])
            if errors.count > 8192 { errors.removeFirst(errors.count - 4096) }
            return true
        }

        /// Waits up to `grace` for the transport to exit, then kills it.
        mutating func waitForExit(grace: Duration) {
            let end = link.clock.now + grace
            while !(transport.outputEnded && transport.diagnosticsEnded) {
                var pollSet = PollSet()
                let slots = transport.register(in: &pollSet, wantsToWrite: false)
                let remaining = end - link.clock.now
                if remaining <= .zero {
                    transport.signal(Signal.kill)
                    return
                }
                _ = try? pollSet.wait(timeoutMilliseconds: Relay.milliseconds(remaining))
                if let index = slots.exit, !pollSet.events(at: index).isEmpty { return }
                if let index = slots.output, !pollSet.events(at: index).isEmpty {
                    var scratch = [UInt8](repeating: 0, count: 4096)
                    _ = scratch.withUnsafeMutableBytes { try? transport.read(into: $0) }
                }
                if let index = slots.diagnostics, !pollSet.events(at: index).isEmpty { readErrors() }
            }
        }
    }
}
