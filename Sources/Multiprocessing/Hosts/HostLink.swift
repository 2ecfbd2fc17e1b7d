import Synchronization

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
    /// The transport's command line, program first, given the binary to copy there if any.
    let makeCommand: @Sendable (DeployedBinary?) -> [String]
    /// The worker binary here, when the host gets a copy of it (``WorkerHost/workerCache``).
    let deploySource: DeploymentSource?
    /// The transport's program, for messages.
    let programName: String
    let heartbeatTimeout: Duration
    let connectTimeout: Duration
    /// For an agent that calls the coordinator back over TCP rather than speak on its
    /// transport's stdout (inside a Slurm allocation): the host to listen toward.
    let callbackPeer: String?
    private let shared = Mutex(Shared())
    let waker: Waker
    /// Wakes the event loop when the status changes.
    private let statusChanged: @Sendable () -> Void
    /// Tells the pool's user of ups and downs.
    private let report: @Sendable (Status, _ retryIn: Duration) -> Void
    let clock = ContinuousClock()

    private struct Shared {
        var status = Status.connecting
        var commands: [Command] = []
        var stopRequested = false
        var relayStarted = false
        var relayEnded = false
    }

    enum Command {
        case open(RelayedChannel, environment: [String], ends: RelayEnds)
        case signal(UInt32, CInt)
    }

    init(name: String, slots: Int, makeCommand: @escaping @Sendable (DeployedBinary?) -> [String], deploySource: DeploymentSource? = nil,
         callbackPeer: String? = nil, heartbeatTimeout: Duration, connectTimeout: Duration,
         statusChanged: @escaping @Sendable () -> Void,
         report: @escaping @Sendable (Status, _ retryIn: Duration) -> Void = { _, _ in }) throws(SystemCallError) {
        self.report = report
        self.callbackPeer = callbackPeer
        self.name = name
        self.slots = slots
        self.makeCommand = makeCommand
        self.deploySource = deploySource
        programName = makeCommand(nil).first ?? "?"
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

    func setStatus(_ status: Status, retryIn: Duration = .zero) {
        shared.withLock { $0.status = status }
        statusChanged()
        report(status, retryIn)
    }

    func takeCommands() -> (commands: [Command], stop: Bool) {
        shared.withLock { shared in
            defer { shared.commands.removeAll() }
            return (shared.commands, shared.stopRequested)
        }
    }
}
