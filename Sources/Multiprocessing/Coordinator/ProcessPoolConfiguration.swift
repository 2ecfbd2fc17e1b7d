/// How a ``ProcessPool`` starts and feeds its workers.
public struct ProcessPoolConfiguration: Sendable {
    /// How many worker processes to keep running.
    public var workerCount: Int
    /// The worker executable's path, or nil to re-execute the running program (which must call
    /// ``Worker/serveIfSpawned(jobs:)`` at the start of `main`).
    public var executablePath: String?
    /// Arguments for the worker. Nil means: for the running program, the arguments it was
    /// started with (so an app's own argument parsing still succeeds); for another executable,
    /// none.
    public var arguments: [String]?
    /// Variables added to (or replacing those in) the coordinator's environment for workers.
    public var environment: [String: String] = [:]
    /// The largest frame either side accepts; a larger input or output fails its job with a
    /// clear error. Default 256 MiB.
    public var maximumFrameSize: Int = WireProtocol.defaultMaximumFrameSize
    /// How many jobs may wait unsent before `submit` and `map` suspend (backpressure).
    public var maximumQueuedJobs: Int = 65_536
    /// How many bytes of encoded input may wait unsent before `submit` and `map` suspend.
    public var maximumQueuedBytes: Int = 64 << 20
    /// Jobs per batch. Nil (the default) lets the pool size batches from measured job times,
    /// aiming at about two milliseconds of work per batch; set it only to override that.
    public var batchSize: Int?
    /// How much measured work the pool puts in one batch when it sizes batches itself: more
    /// means fewer round trips per job, less means results arrive sooner and a slow job holds
    /// up fewer others queued behind it. Default: 2 ms.
    public var targetBatchDuration: Duration = .milliseconds(2)
    /// How long one job may run before its worker is terminated; nil (the default) for no
    /// limit. ``JobOptions/timeout`` overrides it per call.
    public var jobTimeout: Duration?
    /// How many times a job is run again after its worker crashed or it timed out (default 0).
    /// A job that still fails has every attempt's error in ``ProcessPoolError/attempts``, so a
    /// job that keeps killing workers is given up on rather than retried forever.
    public var maximumRetries: Int = 0
    /// The signal that asks a worker to stop when its job timed out or was cancelled, or the
    /// pool is shut down with running jobs (default `SIGTERM`).
    public var terminationSignal: Int32 = 15
    /// How long a worker has to exit after ``terminationSignal``, or after its input is closed
    /// at shutdown, before it gets `SIGKILL` (default two seconds).
    public var terminationGracePeriod: Duration = .seconds(2)
    /// Replace a worker after it has been sent this many jobs (between batches, never mid-job);
    /// nil (the default) for no limit. Cures leaks in job code, like Python's `maxtasksperchild`.
    public var maximumJobsPerWorker: Int?
    /// Replace a worker whose resident memory exceeds this many bytes, checked each time it
    /// finishes a batch (so never mid-job); nil (the default) for no limit. Linux only: read
    /// from `/proc/PID/statm`.
    public var maximumResidentMemory: Int?
    /// A hard cap on each worker's address space, in bytes (`RLIMIT_AS`, set by the worker at
    /// start-up); nil (the default) for none. A job that needs more fails with
    /// ``ProcessPoolError/Code/memoryLimitExceeded`` and its worker is replaced. It counts
    /// reserved address space, not just memory in use: leave room for the runtime (a Swift
    /// worker reserves a few hundred MiB of address space for its threads).
    public var memoryLimit: Int?
    /// With ``idleTimeout``, workers beyond this many exit after being idle that long and are
    /// started again when work arrives. Default: ``workerCount`` (no idle shutdown).
    public var minimumWorkerCount: Int?
    /// How long a worker beyond ``minimumWorkerCount`` may stay idle; nil (the default) for
    /// ever.
    public var idleTimeout: Duration?
    /// How long a new worker has to send its hello before it is taken for something that is
    /// not a worker and killed (default ten seconds).
    public var handshakeTimeout: Duration = .seconds(10)
    /// Whether workers' standard error is copied to the coordinator's (it is always captured,
    /// so a crash report can quote its last lines).
    public var forwardsWorkerStandardError: Bool = true
    /// The machines to run workers on, each with its number of workers. Empty (the default):
    /// this machine, with ``workerCount`` workers. When not empty it replaces ``workerCount``:
    /// the pool runs the sum of the hosts' slots, and includes this machine only if it is
    /// listed (``WorkerHost/local(slots:)``).
    public var hosts: [WorkerHost] = []
    /// How long a remote host may send nothing (heartbeats are sent every third of it) before
    /// it is taken for lost: its workers' jobs run elsewhere (default ten seconds). The pool's
    /// event loop sends the heartbeats: a task on ``ProcessPool/eventLoopExecutor`` that keeps
    /// it busy for this long makes the hosts' agents give up.
    public var hostTimeout: Duration = .seconds(10)
    /// How long a remote host's agent has to answer once its connection starts (default 30
    /// seconds).
    public var hostConnectTimeout: Duration = .seconds(30)
    /// Told when a remote host comes up or goes down (with why), so that an app or a command
    /// line can say so. Called on the pool's event loop thread: it must return quickly.
    public var hostEventHandler: (@Sendable (HostEvent) -> Void)?

    /// A configuration with `workerCount` workers running `executablePath`.
    ///
    /// - Parameters:
    ///   - workerCount: How many worker processes to run; default: the number of active cores.
    ///   - executablePath: The worker binary, or nil to re-execute the running program.
    ///   - arguments: The worker's arguments (see ``arguments``).
    public init(workerCount: Int = ProcessPoolConfiguration.defaultWorkerCount, executablePath: String? = nil, arguments: [String]? = nil) {
        self.workerCount = workerCount
        self.executablePath = executablePath
        self.arguments = arguments
    }

    /// The number of processor cores this process may use: those its CPU affinity allows,
    /// fewer if a container (cgroup) CPU quota is lower.
    public static var defaultWorkerCount: Int { ThisProcess.availableProcessorCount }
}
