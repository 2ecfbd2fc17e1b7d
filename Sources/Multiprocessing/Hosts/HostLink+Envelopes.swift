/// What the agent sends, handed to the host's workers.
extension HostLink {
    /// Handles one envelope from the agent.
    func handle(_ kind: EnvelopeKind, channel number: UInt32, _ payload: UnsafeRawBufferPointer, _ session: Session) throws {
        var fields = WireReader(payload)
        switch kind {
        case .agentHello:
            guard !session.agentHasAnswered else { throw WireError("a second agent hello") }
            _ = try fields.readCount("agent pid", limit: Int(Int32.max))
            _ = try fields.readString("agent host name")
            session.agentHasAnswered = true
            agentAnswered()
            return
        case .pong:
            return
        default:
            guard session.agentHasAnswered else { throw WireError("envelope \(kind) before the agent's hello") }
        }
        guard let connection = channels[number] else {
            // The pool is done with the worker already; nothing to deliver.
            return
        }
        switch kind {
        case .opened:
            connection.started(processID: Int32(try fields.readCount("worker pid", limit: Int(Int32.max))))
        case .openFailed:
            let call = try fields.readString("failed call")
            let errno = try fields.readCount("errno", limit: Int(Int32.max))
            let message = "cannot start the worker on \(name): \(call) failed: \(Errno(rawValue: CInt(errno)))\n"
            Array(message.utf8).withUnsafeBytes { connection.received($0, diagnostics: true) }
            connection.exited(.exited(127))
            channels[number] = nil
        case .output:
            connection.received(payload, diagnostics: false)
        case .diagnostics:
            connection.received(payload, diagnostics: true)
        case .exited:
            let how = try fields.readByte("exit kind")
            let code = Int32(truncatingIfNeeded: try fields.readVarint("exit code"))
            connection.exited(how == 0 ? .exited(code) : .signaled(code))
            // Its channel is free; the agent sends nothing more on it.
            channels[number] = nil
        default:
            throw WireError("envelope kind \(kind) is not one an agent sends")
        }
    }
}
