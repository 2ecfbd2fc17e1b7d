/// One connection to a host's agent: the transport process, the stream the envelopes travel
/// on (the transport's stdin and stdout, or a TCP connection the agent made back), and the
/// heartbeat.
extension HostLink {
    final class Session {
        /// The listening side of an agent that calls back, until it has.
        final class Callback {
            var listener: FileDescriptor?
            let address: String
            let port: Int
            /// 64 hex digits the agent reads from its stdin and sends back first.
            let secret: [UInt8]
            /// Connections accepted and not yet proven, with what they have sent so far.
            var candidates: [Candidate] = []
            /// How many connections were refused; the first few peers are kept for the report.
            var refusedCount = 0

            final class Candidate {
                var connection: FileDescriptor?
                let peer: String
                var received: [UInt8] = []
                /// When it must have proved itself; one that has not is closed.
                let deadline: ContinuousClock.Instant

                init(_ accepted: consuming Network.Accepted, deadline: ContinuousClock.Instant) {
                    peer = accepted.peer
                    connection = .some(accepted.connection)
                    self.deadline = deadline
                }

                deinit { connection.take()?.close() }
            }
            /// Peers that connected without the secret, for the report.
            var refused: [String] = []

            init(listener: consuming Network.Listener, secret: String) {
                address = listener.address
                port = listener.port
                self.listener = .some(listener.descriptor)
                self.secret = Array(secret.utf8)
            }

            deinit { close() }

            /// Stops listening and drops the unproven connections.
            func close() {
                listener.take()?.close()
                candidates.removeAll()
            }

            static let maximumCandidates = 8
            /// How long a connection has to send the secret: the agent sends it at once.
            static let proofTime = Duration.seconds(5)

            /// Counts a refused peer, keeping the first few for the report.
            func refuse(_ peer: String) {
                refusedCount += 1
                if refused.count < 4 { refused.append(peer) }
            }

            /// Closes the connections that have not proved themselves in time.
            func dropStale(now: ContinuousClock.Instant) {
                for candidate in candidates where candidate.deadline <= now { refuse(candidate.peer) }
                candidates.removeAll { $0.deadline <= now }
            }
        }

        unowned let link: HostLink
        let transport: LocalPipeConnection
        /// The transport's command line, for messages.
        let command: [String]
        /// The binary the host may ask for before its agent starts.
        let deployed: DeployedBinary?
        /// The agent's connection back, once proven; nil on a transport that carries the
        /// envelopes itself.
        private var socket: FileDescriptor?
        private let callback: Callback?
        var writer = EnvelopeWriter()
        private var outgoing = PendingBytes()
        private var reader = EnvelopeReader(acceptsAgentKinds: true)
        var agentHasAnswered = false { didSet { if agentHasAnswered && answeredAt == nil { answeredAt = link.clock.now } } }
        /// When the agent answered, to tell a connection that worked from one that fell at once.
        private(set) var answeredAt: ContinuousClock.Instant?
        private var streamClosed = false
        private var streamEnded = false
        private var errors: [UInt8] = []
        private let startedAt: ContinuousClock.Instant
        private var lastHeard: ContinuousClock.Instant
        private var nextPing: ContinuousClock.Instant
        private var pingNumber: UInt64 = 0
        private var stopRequestedAt: ContinuousClock.Instant?
        /// The transport's pidfd said it exited.
        private var exitSeen = false

        /// Whether the first bytes from the host are awaited to learn if it wants the binary;
        /// nothing is sent until then, so a copy read with `head -c` takes no byte of the stream.
        private var awaitingGreeting: Bool
        private var greeting: [UInt8] = []
        /// Set once the binary has been sent, until the agent's first bytes arrive.
        private var awaitingAgentAfterCopy = false
        /// When bytes of the binary last went out.
        private var uploadProgressedAt: ContinuousClock.Instant?

        /// Where this round's descriptors sit in the loop's poll set.
        private var transportSlots = ConnectionSlots()
        private var socketSlot: Int?
        private var listenerSlot: Int?
        private var candidateSlots: [Int] = []

        /// How a connection ended.
        enum Outcome {
            /// The pool stopped it.
            case stopped
            /// It was lost, or never made, for this reason.
            case lost(String)
        }

        struct StartFailure: Error {
            let reason: String
        }

        /// Starts the transport for `link` (reading the binary to copy first, and listening for
        /// an agent that calls back), and sends the agent its hello.
        static func start(_ link: HostLink) -> Result<Session, StartFailure> {
            var deployed: DeployedBinary?
            if let source = link.deploySource {
                do {
                    deployed = try source.read()
                } catch {
                    return .failure(StartFailure(reason: "cannot read the worker binary \(source.path) to copy it there: \(error)"))
                }
            }
            let command = link.makeCommand(deployed)
            guard let program = CommandRunner.resolve(Array(command[0].utf8)) else {
                return .failure(StartFailure(reason: "cannot start \(command[0]): not found in PATH"))
            }
            // An agent that calls back learns where from its environment, and the secret that
            // proves it is ours from its stdin: never from a command line, which others can read.
            var callback: Callback?
            var environment = currentEnvironment()
            if let peer = link.callbackPeer {
                do {
                    let secret = try Network.randomHex(byteCount: 32)
                    let listener = try Network.listen(toward: peer)
                    environment.append("\(AgentProtocol.callbackEnvironmentKey)=\(listener.address) \(listener.port)")
                    callback = Callback(listener: listener, secret: secret)
                } catch {
                    return .failure(StartFailure(reason: "cannot listen for the agent on \(peer) to call back: \(error)"))
                }
            }
            let transport: LocalPipeConnection
            do {
                transport = try LocalPipeConnection(
                    executable: String(decoding: program, as: UTF8.self), arguments: Array(command.dropFirst()),
                    environment: environment)
            } catch {
                callback?.close()
                return .failure(StartFailure(reason: "cannot start \(command[0]): \(error.call) failed: \(error.errno)"))
            }
            return .success(Session(link: link, transport: transport, command: command, callback: callback.take(), deployed: deployed))
        }

        private init(link: HostLink, transport: LocalPipeConnection, command: [String], callback: Callback?, deployed: DeployedBinary?) {
            self.link = link
            self.transport = transport
            self.command = command
            self.callback = callback
            self.deployed = deployed
            awaitingGreeting = deployed != nil
            startedAt = link.clock.now
            lastHeard = startedAt
            nextPing = startedAt
            if let callback {
                // The secret goes first on the transport's stdin, which stays open after it so
                // that its end still means the coordinator is gone.
                var line = callback.secret
                line.append(UInt8(ascii: "\n"))
                _ = line.withUnsafeBytes { try? transport.write($0) }
            }
            writer.writePreamble()
            let timeoutMilliseconds = Int(link.heartbeatTimeout / .milliseconds(1))
            writer.write(.hello, channel: 0) { $0.writeVarint(timeoutMilliseconds) }
        }

        deinit {
            socket.take()?.close()
        }

        var pingInterval: Duration { max(link.heartbeatTimeout / 3, .milliseconds(50)) }

        /// Whether the envelopes travel on the transport's own stdin and stdout.
        private var usesTransportStream: Bool { callback == nil }

        /// The last line or two of what the transport wrote on stderr.
        func errorTail() -> String {
            // Bytes, not Characters: "\r\n" is one Character, and ssh ends its lines so.
            let lines = errors.split(whereSeparator: { $0 == 0x0A || $0 == 0x0D })
            var tail = lines.suffix(2).map { String(decoding: $0, as: UTF8.self) }
            if let callback, callback.refusedCount > 0 {
                tail.append("refused \(callback.refusedCount) connection(s) without the secret, from \(callback.refused.joined(separator: ", "))\(callback.refusedCount > callback.refused.count ? ", …" : "")")
            }
            return tail.joined(separator: " / ")
        }

        /// Ends the stream to the agent, after what is waiting: its cue to stop what is left
        /// and exit.
        func closeStream() {
            guard !streamClosed else { return }
            flush()
            streamClosed = true
            if usesTransportStream {
                transport.closeInput()
            } else {
                socket.take()?.close()
                callback?.close()
                transport.closeInput()
                streamEnded = true
            }
        }

        /// Writes what waits to go to the agent, as much as the stream takes now.
        func flush() {
            guard !awaitingGreeting else { return }
            // After a copy of the binary, the stream's own bytes wait for the agent to speak:
            // a `head -c` that reads ahead (BusyBox, BSD) must find nothing more to take.
            if !writer.bytes.isEmpty && !awaitingAgentAfterCopy { outgoing.take(&writer.bytes) }
            guard !streamClosed, !outgoing.isEmpty else { return }
            let written: Bool
            let waiting = outgoing.count
            defer { if awaitingAgentAfterCopy && outgoing.count < waiting { uploadProgressedAt = link.clock.now } }
            if usesTransportStream {
                written = outgoing.flush(to: transport)
            } else if socket != nil {
                written = outgoing.flush(to: socket!)
            } else {
                return  // not connected back yet
            }
            if !written { outgoing.removeAll() }
        }

        private var canWrite: Bool { !streamClosed && (usesTransportStream || socket != nil) }

        /// How many bytes of the host's workers' input may be taken now: what keeps the bytes
        /// waiting to go out under ``HostLink/outgoingLimit``, so heartbeats and the other
        /// workers' bytes never wait behind one worker's large frame for long.
        var inputRoom: Int { streamClosed ? 0 : max(0, HostLink.outgoingLimit - outgoing.count - writer.bytes.count) }

        /// Sends a worker's bytes as envelopes of `kind`, after what waits, straight from
        /// `data` when the stream takes them: only what it does not take now is copied.
        func sendPieces(_ kind: EnvelopeKind, channel: UInt32, _ data: UnsafeRawBufferPointer) {
            guard canWrite && !awaitingGreeting && !awaitingAgentAfterCopy else {
                writer.writePieces(kind, channel: channel, data)
                return
            }
            if !writer.bytes.isEmpty { outgoing.take(&writer.bytes) }
            let sent = EnvelopeWriter.sendPieces(kind, channel: channel, data) { parts in
                usesTransportStream ? outgoing.send(parts, to: transport) : outgoing.send(parts, to: socket!)
            }
            // A broken stream: its end is seen as the transport's.
            if !sent { outgoing.removeAll() }
        }

        /// Whether the transport has exited: its pidfd said so, or (without one) both its
        /// output streams ended.
        var transportHasExited: Bool {
            exitSeen || (!transport.hasExitEvent && transport.outputEnded && transport.diagnosticsEnded)
        }

        // MARK: Each round of the loop

        /// Timers: the pool stopping, the connect and heartbeat timeouts, the next heartbeat.
        ///
        /// - Returns: How the connection ended, or nil while it goes on.
        func prepare(now: ContinuousClock.Instant) -> Outcome? {
            if link.stopping {
                // An agent that answered gets a moment to stop its workers and exit; a
                // connection still being made (ssh waiting on a host that does not answer)
                // is simply cut.
                if stopRequestedAt == nil { stopRequestedAt = now }
                if streamEnded || transport.outputEnded || !agentHasAnswered || now - stopRequestedAt! > HostLink.stopGrace { return .stopped }
                return nil
            }
            if agentHasAnswered && canWrite && now >= nextPing {
                pingNumber &+= 1
                let number = pingNumber
                writer.write(.ping, channel: 0) { payload in
                    for shift in stride(from: 0, to: 64, by: 8) { payload.writeByte(UInt8(truncatingIfNeeded: number >> shift)) }
                }
                nextPing = now + pingInterval
            }
            flush()
            return nil
        }

        /// When the session next needs the loop: a heartbeat, or a timeout.
        var deadline: ContinuousClock.Instant {
            if link.stopping { return (stopRequestedAt ?? link.clock.now) + HostLink.stopGrace }
            var deadline = agentHasAnswered ? min(nextPing, lastHeard + link.heartbeatTimeout) : max(startedAt, uploadProgressedAt ?? startedAt) + link.connectTimeout
            if let callback, socket == nil, let stale = callback.candidates.map(\.deadline).min() { deadline = min(deadline, stale) }
            return deadline
        }

        /// Adds the transport's descriptors (and the call-back's, while it is awaited).
        func register(in pollSet: inout PollSet, closing: Bool) {
            transportSlots = transport.register(
                in: &pollSet, wantsToWrite: !closing && usesTransportStream && !outgoing.isEmpty && canWrite)
            socketSlot = nil
            listenerSlot = nil
            candidateSlots.removeAll(keepingCapacity: true)
            guard !closing else { return }
            if socket != nil { socketSlot = pollSet.add(socket!, outgoing.isEmpty || !canWrite ? .readable : [.readable, .writable]) }
            if let callback, socket == nil {
                if callback.listener != nil { listenerSlot = pollSet.add(callback.listener!, .readable) }
                for candidate in callback.candidates { candidateSlots.append(pollSet.add(candidate.connection!, .readable)) }
            }
        }

        /// Handles what `poll` reported; then the timeouts, so that answers that came while
        /// the loop was busy elsewhere are read before the host is taken for silent.
        ///
        /// - Returns: How the connection ended, or nil while it goes on.
        func handleEvents(in pollSet: borrowing PollSet) -> Outcome? {
            if let outcome = handleStreamEvents(in: pollSet) { return outcome }
            guard !link.stopping else { return nil }
            let now = link.clock.now
            // A copy of the binary in progress counts as an answer: a large one over a slow
            // link may take longer than the connect timeout, but must keep moving.
            if !agentHasAnswered && now - max(startedAt, uploadProgressedAt ?? startedAt) > link.connectTimeout {
                return .lost("no answer from the agent within \(link.connectTimeout) of connecting")
            }
            if agentHasAnswered && now - lastHeard > link.heartbeatTimeout {
                return .lost("no answer to heartbeats for \(link.heartbeatTimeout): the host or its network is down")
            }
            return nil
        }

        private func handleStreamEvents(in pollSet: borrowing PollSet) -> Outcome? {
            if let index = transportSlots.diagnostics, !pollSet.events(at: index).isEmpty { readErrors(diagnostics: true) }
            if let index = transportSlots.output, !pollSet.events(at: index).isEmpty {
                if usesTransportStream {
                    if let failure = readAgent() { return link.stopping ? .stopped : .lost(failure) }
                } else {
                    // The agent speaks on its connection back; anything here is words.
                    readErrors(diagnostics: false)
                }
            }
            if let index = transportSlots.input, !pollSet.events(at: index).isEmpty { flush() }
            if let index = socketSlot, !pollSet.events(at: index).isEmpty {
                if pollSet.events(at: index).contains(.readable) || pollSet.events(at: index).contains(.hangUp) {
                    if let failure = readAgent() { return link.stopping ? .stopped : .lost(failure) }
                }
                flush()
            }
            if let callback, socket == nil {
                // Positions are those of this round's poll set: read from the last so that a
                // removal leaves the others in place, and stop once one has proved itself
                // (proving closes the rest).
                for (position, index) in candidateSlots.enumerated().reversed() where socket == nil && !pollSet.events(at: index).isEmpty {
                    readCandidate(at: position, callback)
                }
                callback.dropStale(now: link.clock.now)
                if socket == nil, let index = listenerSlot, !pollSet.events(at: index).isEmpty { acceptCandidates(callback) }
                if socket != nil { flush() }
            }
            // The transport's exit ends it too: its stdout may be held open by a process it
            // left behind, and a readable pidfd would make every poll return at once.
            // (Once what it wrote last has been read: its output had nothing this round.)
            let outputQuiet = transportSlots.output.map { pollSet.events(at: $0).isEmpty } ?? true
            if let index = transportSlots.exit, !pollSet.events(at: index).isEmpty, outputQuiet { exitSeen = true }
            let ended = exitSeen || (usesTransportStream ? transport.outputEnded : (streamEnded || (transport.outputEnded && transport.diagnosticsEnded)))
            guard ended else { return nil }
            if link.stopping { return .stopped }
            while !transport.diagnosticsEnded, readErrors(diagnostics: true) {}
            return .lost(agentHasAnswered ? "the connection ended" : "the connection ended before the agent answered")
        }

        /// While waiting for the transport to exit: keeps its last words, and notes its exit.
        func handleClosingEvents(in pollSet: borrowing PollSet) {
            if let index = transportSlots.exit, !pollSet.events(at: index).isEmpty { exitSeen = true }
            if let index = transportSlots.diagnostics, !pollSet.events(at: index).isEmpty { readErrors(diagnostics: true) }
            if let index = transportSlots.output, !pollSet.events(at: index).isEmpty {
                // Envelopes that come now are for workers already lost; only words are kept.
                if usesTransportStream { discardOutput() } else { readErrors(diagnostics: false) }
            }
        }

        // MARK: An agent calling back

        private func acceptCandidates(_ callback: Callback) {
            // At most a few per round: a flood must not keep the loop from its other work.
            for _ in 0..<Callback.maximumCandidates {
                guard callback.listener != nil, let accepted = try? Network.accept(callback.listener!) else { return }
                let candidate = Callback.Candidate(accepted, deadline: link.clock.now + Callback.proofTime)
                if callback.candidates.count >= Callback.maximumCandidates {
                    // The oldest goes, not the newcomer: silent connections cannot keep the
                    // agent out.
                    callback.refuse(callback.candidates.removeFirst().peer)
                }
                callback.candidates.append(candidate)
            }
        }

        /// Reads what a connection that has not proven itself sent: the secret and a newline,
        /// compared in full whatever the first difference, or it is refused and closed.
        private func readCandidate(at position: Int, _ callback: Callback) {
            guard position < callback.candidates.count else { return }
            let needed = callback.secret.count + 1
            let candidate = callback.candidates[position]
            var chunk = [UInt8](repeating: 0, count: needed - candidate.received.count)
            let result = chunk.withUnsafeMutableBytes { bytes in
                Result { () throws(SystemCallError) in try candidate.connection!.read(into: bytes) }
            }
            switch result {
            case .success(.wouldBlock):
                return
            case .success(.transferred(let count)) where count > 0:
                candidate.received += chunk[..<count]
                guard candidate.received.count == needed else { return }
            default:
                break
            }
            callback.candidates.remove(at: position)
            let received = candidate.received
            var difference: UInt8 = received.count == needed ? 0 : 1
            if received.count == needed {
                for index in callback.secret.indices { difference |= received[index] ^ callback.secret[index] }
                difference |= received[needed - 1] ^ UInt8(ascii: "\n")
            }
            guard difference == 0 else {
                callback.refuse(candidate.peer)
                return  // closed as it goes
            }
            socket = candidate.connection.take()
            // Proven: nothing listens any more.
            callback.close()
        }

        // MARK: Reading

        /// Reads what the agent sent and handles each whole envelope.
        ///
        /// - Returns: Why the connection must end, or nil.
        private func readAgent() -> String? {
            func read(_ bytes: UnsafeMutableRawBufferPointer) -> Result<FileDescriptor.IOResult, SystemCallError> {
                Result { () throws(SystemCallError) in
                    usesTransportStream ? try transport.read(into: bytes) : try socket!.read(into: bytes)
                }
            }
            var result = Result<FileDescriptor.IOResult, SystemCallError>.success(.wouldBlock)
            if awaitingGreeting {
                result = link.buffer.withUnsafeMutableBytes { read($0) }
            } else {
                // Straight into the reader's buffer: the bytes are not copied on their way.
                _ = reader.fill(upTo: link.buffer.count) { room in
                    result = read(room)
                    guard case .success(.transferred(let count)) = result else { return 0 }
                    return count
                }
            }
            guard case .success(.transferred(let count)) = result else {
                if case .failure(let error) = result {
                    endSocket()
                    return "reading from the connection failed: \(error)"
                }
                return nil
            }
            if count == 0 {
                endSocket()
                return nil  // its end: seen through `outputEnded` or `streamEnded`
            }
            lastHeard = link.clock.now
            if awaitingAgentAfterCopy && !awaitingGreeting {
                awaitingAgentAfterCopy = false
                flush()
            }
            if awaitingGreeting {
                link.buffer.withUnsafeBytes { greeting += $0[..<count] }
                guard let rest = takeGreeting() else { return nil }
                rest.withUnsafeBytes { reader.append($0) }
                flush()
            }
            do {
                while try reader.next({ kind, channel, payload in try link.handle(kind, channel: channel, payload, self) }) != nil {}
            } catch {
                return "the agent broke the protocol: \(error)"
            }
            return nil
        }

        /// Decides, from the host's first bytes, whether it asked for the binary (then it goes
        /// first on the stream); returns the bytes that follow, or nil while undecided.
        private func takeGreeting() -> [UInt8]? {
            let request = Array((DeployedBinary.request + "\n").utf8)
            let compared = min(greeting.count, request.count)
            if Array(greeting.prefix(compared)) == Array(request.prefix(compared)) {
                guard greeting.count >= request.count else { return nil }
                awaitingGreeting = false
                if let deployed { outgoing.append(deployed.content) }
                awaitingAgentAfterCopy = true
                return Array(greeting.dropFirst(request.count))
            }
            // The agent itself (its preamble), or words the reader will name.
            awaitingGreeting = false
            return greeting
        }

        private func endSocket() {
            guard !usesTransportStream else { return }
            socket.take()?.close()
            streamEnded = true
        }

        /// Keeps the last of what the transport wrote (on stderr, or on stdout where the
        /// envelopes travel elsewhere); false once that stream has ended.
        @discardableResult
        private func readErrors(diagnostics: Bool) -> Bool {
            var chunk = [UInt8](repeating: 0, count: 4096)
            let result = chunk.withUnsafeMutableBytes { bytes in
                Result { () throws(SystemCallError) in
                    diagnostics ? try transport.readDiagnostics(into: bytes) : try transport.read(into: bytes)
                }
            }
            guard case .success(.transferred(let count)) = result, count > 0 else { return false }
            errors.append(contentsOf: chunk[..<count])
            if errors.count > 8192 { errors.removeFirst(errors.count - 4096) }
            return true
        }

        /// Reads and drops what comes on the transport's stdout.
        private func discardOutput() {
            _ = link.buffer.withUnsafeMutableBytes { bytes in
                Result { () throws(SystemCallError) in try transport.read(into: bytes) }
            }
        }
    }
}
