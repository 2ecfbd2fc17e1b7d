/// One remote host's connection: the transport process (`ssh`, `srun`, a launcher) that runs
/// the agent there, and the channels of the host's workers (``RelayedConnection``) on it.
///
/// The event loop drives it, on the loop's own thread, as it drives local workers: each round
/// it calls ``prepare()`` (timers: heartbeats, timeouts, reconnecting), ``register(in:)``, and
/// after `poll`, ``handleEvents(in:)``, which reads the agent's envelopes and hands each
/// worker's bytes to its connection. So a job's bytes go from the loop to the transport and
/// back with no thread in between.
///
/// The link sends a heartbeat every third of `heartbeatTimeout` and declares the host lost
/// when nothing has come back for the whole timeout (a cut network gives no end of file), or
/// when the transport ends. Then every worker there ends as lost with the host, and the link
/// connects again after a backoff (1 s, doubling, at most 30 s) until the pool stops.
final class HostLink {
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
    /// The transport's command line, program first, given the binary to copy there if any.
    let makeCommand: (DeployedBinary?) -> [String]
    /// The worker binary here, when the host gets a copy of it (``WorkerHost/workerCache``).
    let deploySource: DeploymentSource?
    let heartbeatTimeout: Duration
    let connectTimeout: Duration
    /// For an agent that calls the coordinator back over TCP rather than speak on its
    /// transport's stdout (inside a Slurm allocation): the host to listen toward.
    let callbackPeer: String?
    /// Tells the pool's user of ups and downs.
    private let report: (Status, _ retryIn: Duration) -> Void
    let clock = ContinuousClock()

    private(set) var status = Status.connecting
    /// The host's workers, by channel number.
    var channels: [UInt32: RelayedConnection] = [:]
    /// Scratch space for reads.
    var buffer = [UInt8](repeating: 0, count: 256 * 1024)
    /// The pool asked the link to stop.
    private(set) var stopping = false
    private var phase = Phase.idle
    private var backoff = Duration.seconds(1)
    private var failedAttempts = 0

    private enum Phase {
        case idle
        /// The transport runs: the agent is being reached, or answers.
        case connected(Session)
        /// The connection ended (for `reason`, nil when the pool stopped it): waiting up to
        /// `deadline` for the transport to exit, to report its status.
        case closing(Session, reason: String?, deadline: ContinuousClock.Instant)
        /// Down: connecting again at `until`.
        case waiting(until: ContinuousClock.Instant)
        case stopped
    }

    static let longestBackoff = Duration.seconds(30)
    /// Transport output waiting beyond this makes the host's workers' writes wait.
    static let outgoingLimit = 8 << 20
    /// How long an agent that answered has to stop its workers and exit when the pool stops.
    static let stopGrace = Duration.seconds(2)

    init(name: String, slots: Int, makeCommand: @escaping (DeployedBinary?) -> [String], deploySource: DeploymentSource? = nil,
         callbackPeer: String? = nil, heartbeatTimeout: Duration, connectTimeout: Duration,
         report: @escaping (Status, _ retryIn: Duration) -> Void = { _, _ in }) {
        self.report = report
        self.callbackPeer = callbackPeer
        self.name = name
        self.slots = slots
        self.makeCommand = makeCommand
        self.deploySource = deploySource
        self.heartbeatTimeout = heartbeatTimeout
        self.connectTimeout = connectTimeout
    }

    /// Whether the link is done: stopped by the pool, its transport gone.
    var hasEnded: Bool {
        if case .stopped = phase { return true }
        return false
    }

    /// Connects for the first time.
    func start() {
        guard case .idle = phase else { return }
        connect()
    }

    /// Ends the connection: the agent sees the end of its input, stops what is left and exits.
    /// The link has ended (``hasEnded``) once the transport has exited.
    func stop() {
        guard !stopping else { return }
        stopping = true
        switch phase {
        case .connected(let session):
            // The agent's cue to stop what is left and exit.
            session.closeStream()
        case .idle, .waiting:
            phase = .stopped
            setStatus(.stopped)
        case .closing, .stopped:
            break
        }
    }

    // MARK: Driven by the event loop

    /// Does what is due before the loop waits: heartbeats, timeouts, the end of a backoff.
    func prepare() {
        let now = clock.now
        switch phase {
        case .connected(let session):
            if let outcome = session.prepare(now: now) { end(session, outcome) }
        case .closing(let session, let reason, let deadline):
            if session.transportHasExited || now >= deadline { finishClosing(session, reason: reason) }
        case .waiting(let until):
            if now >= until { connect() }
        case .idle, .stopped:
            break
        }
    }

    /// Adds the transport's descriptors to `pollSet`.
    func register(in pollSet: inout PollSet) {
        switch phase {
        case .connected(let session), .closing(let session, _, _): session.register(in: &pollSet, closing: !isConnected)
        case .idle, .waiting, .stopped: break
        }
    }

    /// Handles what `poll` reported for the transport's descriptors.
    func handleEvents(in pollSet: borrowing PollSet) {
        switch phase {
        case .connected(let session):
            if let outcome = session.handleEvents(in: pollSet) { end(session, outcome) }
        case .closing(let session, let reason, _):
            session.handleClosingEvents(in: pollSet)
            if session.transportHasExited { finishClosing(session, reason: reason) }
        case .idle, .waiting, .stopped:
            break
        }
    }

    /// When the link next needs the loop, if it has a deadline.
    var deadline: ContinuousClock.Instant? {
        switch phase {
        case .connected(let session): return session.deadline
        case .closing(_, _, let deadline): return deadline
        case .waiting(let until): return until
        case .idle, .stopped: return nil
        }
    }

    /// Whether the host can take new workers: up, and its connection not ending.
    var takesWorkers: Bool { status == .up && isConnected }

    private var isConnected: Bool {
        if case .connected = phase { return true }
        return false
    }

    // MARK: Channels

    /// How many bytes the host's workers may write now: none unless the connection is there,
    /// and only so many that not too much waits to go out on it.
    var inputRoom: Int {
        guard case .connected(let session) = phase else { return 0 }
        return session.inputRoom
    }

    /// Sends bytes for a worker's stdin (the loop checked ``acceptsInput``).
    func sendInput(of channel: UInt32, _ bytes: UnsafeRawBufferPointer) {
        guard case .connected(let session) = phase, channels[channel] != nil else { return }
        session.sendPieces(.input, channel: channel, bytes)
    }

    func closeInput(of channel: UInt32) {
        guard case .connected(let session) = phase, channels[channel] != nil else { return }
        session.writer.write(.closeInput, channel: channel)
        session.flush()
    }

    func signal(_ channel: UInt32, _ signal: CInt) {
        guard case .connected(let session) = phase, channels[channel] != nil else { return }
        session.writer.write(.signal, channel: channel) { $0.writeVarint(Int(signal)) }
        session.flush()
    }

    /// The loop is done with a worker: whatever still comes for it is dropped.
    func forget(_ channel: UInt32) {
        channels[channel] = nil
    }

    /// Asks the agent to start a worker with `environment` on `connection`'s channel.
    func open(_ connection: RelayedConnection, environment: [String]) {
        guard case .connected(let session) = phase, !stopping else {
            // A worker asked for while the host is down ends at once, lost with it.
            connection.lost(because: stopping ? "the pool is stopping" : downReason)
            return
        }
        var payload = WireWriter()
        payload.writeVarint(environment.count)
        for entry in environment { payload.writeString(entry) }
        guard payload.bytes.count <= AgentProtocol.maximumPayloadSize else {
            // Said on the worker's stderr, so its start failure names it.
            let message = Array("the worker's environment is \(payload.bytes.count) bytes, over the \(AgentProtocol.maximumPayloadSize) an agent takes\n".utf8)
            message.withUnsafeBytes { connection.received($0, diagnostics: true) }
            connection.exited(.exited(126))
            return
        }
        channels[connection.number] = connection
        session.writer.write(.open, channel: connection.number, payload: payload.bytes)
        session.flush()
    }

    private var downReason: String {
        if case .down(let reason, _) = status { return reason }
        return "the host is not connected"
    }

    // MARK: Connecting and losing the connection

    private func setStatus(_ status: Status, retryIn: Duration = .zero) {
        self.status = status
        report(status, retryIn)
    }

    /// Starts the transport; a connection that cannot even start is down at once.
    private func connect() {
        switch Session.start(self) {
        case .success(let session):
            phase = .connected(session)
        case .failure(let failure):
            wentDown(failure.reason, worked: false)
        }
    }

    /// The agent answered: workers can be started.
    func agentAnswered() {
        setStatus(.up)
    }

    /// A connection ended, for `outcome`: the transport is made to exit (one whose output
    /// ended is on its way out with a status worth reporting, ssh's 255 or a missing binary's
    /// 127; one still running is cut off), and waited for.
    private func end(_ session: Session, _ outcome: Session.Outcome) {
        let reason: String?
        switch outcome {
        case .stopped: reason = nil
        case .lost(let why): reason = why
        }
        if !session.transport.outputEnded && (!stopping || !session.agentHasAnswered) { session.transport.signal(Signal.kill) }
        session.closeStream()
        phase = .closing(session, reason: reason, deadline: clock.now + Self.stopGrace)
        if session.transportHasExited { finishClosing(session, reason: reason) }
    }

    /// The transport has exited (or would not, and was killed): reports why the host is down
    /// and waits to connect again, or ends the link if the pool stopped it.
    private func finishClosing(_ session: Session, reason: String?) {
        if !session.transportHasExited { session.transport.signal(Signal.kill) }
        let status = session.transport.finish()
        // Up for a while: a working connection that was lost, not one that never worked.
        let worked = session.answeredAt.map { clock.now - $0 >= .seconds(5) } ?? false
        guard let reason, !stopping else {
            loseChannels(because: "the pool is stopping")
            phase = .stopped
            setStatus(.stopped)
            return
        }
        var described = reason
        let errors = session.errorTail()
        if !errors.isEmpty { described += ": " + errors }
        let program = session.command.first ?? "?"
        if case .exited(let code) = status, code != 0 || !session.agentHasAnswered {
            let meaning = code == 127 ? ": the worker binary, or a library it needs, was not found there" : code == 126 && session.deployed != nil ? ": the worker binary could not be copied there" : ""
            described += " (\(program) exited with status \(code)\(meaning))"
        } else if case .signaled(let signal) = status, signal != Signal.kill {
            described += " (\(program) ended by \(status))"
        }
        wentDown(described, worked: worked)
    }

    /// Marks the host down for `reason`, loses its workers, and waits out a backoff.
    private func wentDown(_ reason: String, worked: Bool) {
        loseChannels(because: reason)
        if worked {
            failedAttempts = 0
            backoff = .seconds(1)
        } else {
            // Never answered, or answered and fell at once (an agent that dies on its first
            // worker): tried again with a growing backoff, and counted as failing.
            failedAttempts += 1
        }
        guard !stopping else {
            phase = .stopped
            setStatus(.stopped)
            return
        }
        phase = .waiting(until: clock.now + backoff)
        setStatus(.down(reason: reason, failedAttempts: failedAttempts), retryIn: backoff)
        backoff = min(backoff * 2, Self.longestBackoff)
    }

    /// Ends every worker of the host as lost with it.
    private func loseChannels(because reason: String) {
        for connection in channels.values {
            // One that exited but whose last bytes the loop has not read is not lost: they are
            // all here.
            connection.lost(because: reason)
        }
        channels.removeAll()
    }
}
