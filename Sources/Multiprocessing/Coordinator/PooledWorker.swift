/// One worker as the event loop sees it: how it is reached, what it has been sent, and where
/// it is in its life. Touched only on the event loop's thread.
final class PooledWorker {
    enum State: Equatable {
        /// Spawned; its hello has not arrived.
        case starting
        /// Taking jobs.
        case ready
        /// Asked to exit (input closed or signalled); no new jobs.
        case stopping
    }

    enum TerminationReason {
        /// The running job exceeded its timeout after running this long.
        case timedOut(ran: Duration, limit: Duration)
        /// A job it had was cancelled.
        case cancelled
    }

    /// How the worker is reached.
    let connection: any WorkerConnection
    var state = State.starting
    var jobNames: [String] = []
    var jobIndexByName: [String: Int] = [:]
    var reader: FrameReader
    /// Bytes not yet written to the worker.
    var outgoing = PendingWrites()
    /// Batches sent and not yet fully answered, oldest (the running one) first.
    var inFlight: [InFlightBatch] = []
    /// Whether the stream to the worker has been closed.
    private(set) var inputClosed = false
    /// Why the worker is being killed, when it broke the protocol.
    var violation: String?
    /// What the worker said in a fatal frame before exiting.
    var fatalMessage: String?
    /// When to escalate to SIGKILL, once a termination has begun.
    var killDeadline: ContinuousClock.Instant?
    /// When its output ended while it still ran: a worker exits right after, and one that does
    /// not within the grace period has broken the protocol.
    var outputEndedAt: ContinuousClock.Instant?
    /// When the job (in a batch that reports each result) or the batch now at the head of
    /// `inFlight` started; nil while idle.
    var runningSince: ContinuousClock.Instant?
    /// Why the pool is terminating this worker, when it is.
    var termination: TerminationReason?
    /// Jobs sent to this worker so far, for `maximumJobsPerWorker`.
    var jobsSent = 0
    /// Since when the worker has had nothing to do, for `idleTimeout`.
    var idleSince: ContinuousClock.Instant?
    /// Set when the worker is being replaced in good order (recycled, or idle): it takes no
    /// more jobs, finishes what it has, and exits when its input is closed.
    var isRetiring = false
    /// The last bytes of its diagnostics (stderr), for crash reports.
    private var errorTail: [UInt8] = []

    /// When the worker was spawned, for the handshake timeout.
    let spawnedAt: ContinuousClock.Instant
    /// Its slot number, 1…workerCount (GNU parallel's `{%}`).
    let slot: Int
    /// The index of its host in the loop's ``EventLoop/hosts``.
    var host = 0

    init(connection: any WorkerConnection, maximumFrameSize: Int, spawnedAt: ContinuousClock.Instant, slot: Int) {
        self.connection = connection
        self.slot = slot
        self.spawnedAt = spawnedAt
        reader = FrameReader(maximumFrameSize: maximumFrameSize)
    }

    var pid: Int32 { connection.processID }
    var executablePath: String { connection.executablePath }
    var outputEnded: Bool { connection.outputEnded }
    var errorOutputEnded: Bool { connection.diagnosticsEnded }
    var pendingOutgoingBytes: Int { outgoing.count }
    var isIdle: Bool { inFlight.isEmpty && outgoing.count == 0 }

    /// Keeps the last bytes the worker wrote to stderr, for crash reports.
    func recordStandardError(_ bytes: UnsafeRawBufferPointer) {
        errorTail.append(contentsOf: bytes)
        if errorTail.count > 16 * 1024 { errorTail.removeFirst(errorTail.count - 8 * 1024) }
    }

    /// The last `lines` lines of stderr.
    func standardErrorTail(lines: Int = 40) -> String {
        var text = String(decoding: errorTail, as: UTF8.self)
        while text.hasSuffix("\n") { text.removeLast() }
        return text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
    }

    /// Writes as much of the outgoing bytes as the worker takes now.
    /// - Returns: false if the worker's input is broken (it exited).
    func flushOutgoing() -> Bool {
        guard !inputClosed else { return false }
        return outgoing.flush(to: connection)
    }

    func closeInput() {
        guard !inputClosed else { return }
        inputClosed = true
        connection.closeInput()
        outgoing.removeAll()
    }

    /// The worker's stdin is broken (it exited or closed it): take no more jobs; its exit
    /// handler rescues what it had.
    func inputBroke() {
        closeInput()
        if state != .starting || !jobNames.isEmpty { state = .stopping }
    }
}
