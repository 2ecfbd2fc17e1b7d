/// The relay thread: connecting (and connecting again after a loss), handing the event
/// loop's requests to the agent, and delivering each worker's bytes to its pipes.
extension HostLink {
    /// The relay thread's state and work.
    final class Relay {
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
                    // Never answered, or answered and fell at once (an agent that dies on its
                    // first worker): tried again with a growing backoff, and counted as failing.
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
                // One that exited but whose last bytes cannot be delivered now is lost too: its
                // frame would look cut short by the worker itself.
                channel.record.lost(because: reason, evenIfExited: !channel.isDelivered)
                channel.closeAll()
            }
            channels.removeAll()
        }

        /// One connection, from spawning the transport to its end.
        ///
        /// - Returns: Why it ended (nil when the pool stopped it), and whether the agent had
        ///   answered.
        private func connectAndRelay() -> (reason: String?, wasUp: Bool) {
            var deployed: DeployedBinary?
            if let source = link.deploySource {
                do {
                    deployed = try source.read()
                } catch {
                    return ("cannot read the worker binary \(source.path) to copy it there: \(error)", false)
                }
            }
            let command = link.makeCommand(deployed)
            guard let program = CommandRunner.resolve(Array(command[0].utf8)) else {
                return ("cannot start \(command[0]): not found in PATH", false)
            }
            // An agent that calls back learns where from its environment, and the secret that
            // proves it is ours from its stdin: never from a command line, which others can read.
            var callback: Session.Callback?
            var environment = currentEnvironment()
            if let peer = link.callbackPeer {
                do {
                    let secret = try Network.randomHex(byteCount: 32)
                    let listener = try Network.listen(toward: peer)
                    environment.append("\(AgentProtocol.callbackEnvironmentKey)=\(listener.address) \(listener.port)")
                    callback = Session.Callback(listener: listener, secret: secret)
                } catch {
                    return ("cannot listen for the agent on \(peer) to call back: \(error)", false)
                }
            }
            let transport: LocalPipeConnection
            do {
                transport = try LocalPipeConnection(
                    executable: String(decoding: program, as: UTF8.self), arguments: Array(command.dropFirst()),
                    environment: environment)
            } catch {
                callback?.close()
                return ("cannot start \(command[0]): \(error.call) failed: \(error.errno)", false)
            }
            let session = Session(link: link, transport: transport, callback: callback.take(), deployment: deployed)
            let outcome = session.relay(self)
            // The transport is done with, one way or another: make sure it exits. One whose
            // output ended is on its way out with a status worth reporting (ssh's 255, a
            // missing binary's 127); one still running is cut off.
            if !transport.outputEnded && (!stopping || !session.agentAnswered) { transport.signal(Signal.kill) }
            session.waitForExit(grace: .seconds(2))
            let status = transport.finish()
            // Up for a while: a working connection that was lost, not one that never worked.
            let worked = session.answeredAt.map { link.clock.now - $0 >= .seconds(5) } ?? false
            guard let reason = outcome else { return (nil, worked) }
            loseChannels(because: reason)
            var described = reason
            let errors = session.errorTail()
            if !errors.isEmpty { described += ": " + errors }
            if case .exited(let code) = status, code != 0 || !session.agentAnswered {
                let meaning = code == 127 ? ": the worker binary, or a library it needs, was not found there" : code == 126 && deployed != nil ? ": the worker binary could not be copied there" : ""
                described += " (\(command[0]) exited with status \(code)\(meaning))"
            } else if case .signaled(let signal) = status, signal != Signal.kill {
                described += " (\(command[0]) ended by \(status))"
            }
            return (described, worked)
        }

        func handleCommands(_ session: Session) -> Bool {
            let (commands, stop) = link.takeCommands()
            for command in commands {
                switch command {
                case .open(let record, let environment, let ends):
                    guard !stopping else {
                        refuse(record, ends: ends, reason: "the pool is stopping")
                        continue
                    }
                    var payload = WireWriter()
                    payload.writeVarint(environment.count)
                    for entry in environment { payload.writeString(entry) }
                    guard payload.bytes.count <= AgentProtocol.maximumPayloadSize else {
                        // Said on the worker's stderr, so its start failure names it.
                        let message = Array("the worker's environment is \(payload.bytes.count) bytes, over the \(AgentProtocol.maximumPayloadSize) an agent takes\n".utf8)
                        if ends.diagnostics != nil { _ = message.withUnsafeBytes { try? ends.diagnostics!.write($0) } }
                        record.exited(.exited(126))
                        continue
                    }
                    channels[record.number] = Channel(record: record, ends: ends)
                    session.writer.write(.open, channel: record.number, payload: payload.bytes)
                case .signal(let number, let signal):
                    guard channels[number] != nil, !(channels[number]!.exited) else { continue }
                    session.writer.write(.signal, channel: number) { $0.writeVarint(Int(signal)) }
                }
            }
            if stop && !stopping {
                stopping = true
                // The agent's cue to stop what is left and exit.
                session.closeStream()
            }
            return stopping
        }

        func relayInput(of number: UInt32, _ session: Session) {
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

        func deliver(_ channel: Channel) {
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
        func handle(_ kind: EnvelopeKind, channel number: UInt32, _ payload: UnsafeRawBufferPointer, _ session: Session) throws {
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
                // A closed pipe (the pool let the worker go) takes nothing more.
                if channel.output != nil { channel.toOutput.append(payload) }
            case .diagnostics:
                if channel.diagnostics != nil { channel.toDiagnostics.append(payload) }
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
}
