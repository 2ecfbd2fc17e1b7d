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

        let link: HostLink
        let transport: LocalPipeConnection
        /// The agent's connection back, once proven; nil on a transport that carries the
        /// envelopes itself.
        private var socket: FileDescriptor?
        private let callback: Callback?
        var writer = EnvelopeWriter()
        private var outgoing = PendingBytes()
        private var reader = EnvelopeReader(acceptsAgentKinds: true)
        var agentAnswered = false { didSet { if agentAnswered && answeredAt == nil { answeredAt = link.clock.now } } }
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

        /// The binary the host may ask for before its agent starts.
        private let deployment: DeployedBinary?
        /// Whether the first bytes from the host are awaited to learn if it wants the binary;
        /// nothing is sent until then, so a copy read with `head -c` takes no byte of the stream.
        private var awaitingGreeting: Bool
        private var greeting: [UInt8] = []
        /// Set once the binary has been sent, until the agent's first bytes arrive.
        private var awaitingAgentAfterCopy = false
        /// When bytes of the binary last went out.
        private var uploadProgressedAt: ContinuousClock.Instant?

        init(link: HostLink, transport: LocalPipeConnection, callback: Callback?, deployment: DeployedBinary?) {
            self.link = link
            self.transport = transport
            self.callback = callback
            self.deployment = deployment
            awaitingGreeting = deployment != nil
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

        private func flush() {
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

        /// Relays until the connection ends.
        ///
        /// - Returns: Why it ended, or nil when the pool stopped it.
        func relay(_ relay: Relay) -> String? {
            writer.writePreamble()
            let timeoutMilliseconds = Int(link.heartbeatTimeout / .milliseconds(1))
            writer.write(.hello, channel: 0) { $0.writeVarint(timeoutMilliseconds) }
            var pollSet = PollSet()
            var channelSlots: [(number: UInt32, input: Int?, output: Int?, diagnostics: Int?)] = []
            while true {
                let stopping = relay.handleCommands(self)
                let now = link.clock.now
                if stopping {
                    // An agent that answered gets a moment to stop its workers and exit; a
                    // connection still being made (ssh waiting on a host that does not
                    // answer) is simply cut.
                    if stopRequestedAt == nil { stopRequestedAt = now }
                    if streamEnded || transport.outputEnded || !agentAnswered || now - stopRequestedAt! > .seconds(2) { return nil }
                }
                // A copy of the binary in progress counts as an answer: a large one over a slow
                // link may take longer than the connect timeout, but must keep moving.
                if !agentAnswered && now - max(startedAt, uploadProgressedAt ?? startedAt) > link.connectTimeout {
                    return "no answer from the agent within \(link.connectTimeout) of connecting"
                }
                if agentAnswered && !relay.stopping && now - lastHeard > link.heartbeatTimeout {
                    return "no answer to heartbeats for \(link.heartbeatTimeout): the host or its network is down"
                }
                if agentAnswered && canWrite && now >= nextPing {
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
                let transportSlots = transport.register(
                    in: &pollSet, wantsToWrite: usesTransportStream && !outgoing.isEmpty && canWrite)
                var socketSlot: Int?
                if socket != nil { socketSlot = pollSet.add(socket!, outgoing.isEmpty || !canWrite ? .readable : [.readable, .writable]) }
                var listenerSlot: Int?
                var candidateSlots: [Int] = []
                if let callback, socket == nil {
                    if callback.listener != nil { listenerSlot = pollSet.add(callback.listener!, .readable) }
                    for candidate in callback.candidates { candidateSlots.append(pollSet.add(candidate.connection!, .readable)) }
                }
                let readsWorkers = agentAnswered && outgoing.count < Relay.outgoingLimit && canWrite
                for (number, channel) in relay.channels {
                    let input = readsWorkers && channel.input != nil ? pollSet.add(channel.input!, .readable) : nil
                    let output = !channel.toOutput.isEmpty && channel.output != nil ? pollSet.add(channel.output!, .writable) : nil
                    let diagnostics = !channel.toDiagnostics.isEmpty && channel.diagnostics != nil ? pollSet.add(channel.diagnostics!, .writable) : nil
                    channelSlots.append((number, input, output, diagnostics))
                }
                var deadline = agentAnswered ? min(nextPing, lastHeard + link.heartbeatTimeout) : max(startedAt, uploadProgressedAt ?? startedAt) + link.connectTimeout
                if relay.stopping { deadline = now + .seconds(1) }
                do {
                    _ = try pollSet.wait(timeoutMilliseconds: Relay.milliseconds(deadline - link.clock.now))
                } catch {
                    return "the relay cannot wait for events: \(error)"
                }
                link.waker.drain()

                if let index = transportSlots.diagnostics, !pollSet.events(at: index).isEmpty { readErrors(diagnostics: true) }
                if let index = transportSlots.output, !pollSet.events(at: index).isEmpty {
                    if usesTransportStream {
                        if let failure = readAgent(relay) { return relay.stopping ? nil : failure }
                    } else {
                        // The agent speaks on its connection back; anything here is words.
                        readErrors(diagnostics: false)
                    }
                }
                if let index = transportSlots.input, !pollSet.events(at: index).isEmpty { flush() }
                if let index = socketSlot, !pollSet.events(at: index).isEmpty {
                    if pollSet.events(at: index).contains(.readable) || pollSet.events(at: index).contains(.hangUp) {
                        if let failure = readAgent(relay) { return relay.stopping ? nil : failure }
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
                }
                for slots in channelSlots {
                    guard let channel = relay.channels[slots.number] else { continue }
                    if let index = slots.output, !pollSet.events(at: index).isEmpty { relay.deliver(channel) }
                    if let index = slots.diagnostics, !pollSet.events(at: index).isEmpty { relay.deliver(channel) }
                    if let index = slots.input, !pollSet.events(at: index).isEmpty { relay.relayInput(of: slots.number, self) }
                }
                // The transport's exit ends it too: its stdout may be held open by a process it
                // left behind, and a readable pidfd would make every poll return at once.
                // (Once what it wrote last has been read: its output had nothing this round.)
                let outputQuiet = transportSlots.output.map { pollSet.events(at: $0).isEmpty } ?? true
                let exited = outputQuiet && (transportSlots.exit.map { !pollSet.events(at: $0).isEmpty } ?? false)
                let ended = exited || (usesTransportStream ? transport.outputEnded : (streamEnded || (transport.outputEnded && transport.diagnosticsEnded)))
                if ended {
                    if relay.stopping { return nil }
                    while !transport.diagnosticsEnded, readErrors(diagnostics: true) {}
                    return agentAnswered ? "the connection ended" : "the connection ended before the agent answered"
                }
            }
        }

        // MARK: An agent calling back

        private func acceptCandidates(_ callback: Callback) {
            // At most a few per round: a flood must not keep the relay from its other work.
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
        private func readAgent(_ relay: Relay) -> String? {
            let result = relay.buffer.withUnsafeMutableBytes { bytes in
                Result { () throws(SystemCallError) in
                    usesTransportStream ? try transport.read(into: bytes) : try socket!.read(into: bytes)
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
            if awaitingAgentAfterCopy && !awaitingGreeting && count > 0 {
                awaitingAgentAfterCopy = false
                flush()
            }
            if awaitingGreeting {
                relay.buffer.withUnsafeBytes { greeting += $0[..<count] }
                guard let rest = takeGreeting() else { return nil }
                rest.withUnsafeBytes { reader.append($0) }
                flush()
            } else {
                relay.buffer.withUnsafeBytes { reader.append(UnsafeRawBufferPointer(rebasing: $0[..<count])) }
            }
            do {
                while try reader.next({ kind, channel, payload in try relay.handle(kind, channel: channel, payload, self) }) != nil {}
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
                if let deployment { outgoing.append(deployment.content) }
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

        /// Waits up to `grace` for the transport to exit, then kills it, so that reaping it
        /// cannot block: a transport that closed its streams may still be running.
        func waitForExit(grace: Duration) {
            let end = link.clock.now + grace
            while true {
                var pollSet = PollSet()
                let slots = transport.register(in: &pollSet, wantsToWrite: false)
                // Without a pidfd, the end of both streams is all there is to wait for.
                if slots.exit == nil && transport.outputEnded && transport.diagnosticsEnded { return }
                let remaining = end - link.clock.now
                if remaining <= .zero {
                    transport.signal(Signal.kill)
                    return
                }
                _ = try? pollSet.wait(timeoutMilliseconds: Relay.milliseconds(remaining))
                if let index = slots.exit, !pollSet.events(at: index).isEmpty { return }
                if let index = slots.output, !pollSet.events(at: index).isEmpty { readErrors(diagnostics: false) }
                if let index = slots.diagnostics, !pollSet.events(at: index).isEmpty { readErrors(diagnostics: true) }
            }
        }
    }
}
