/// Per-call settings for jobs, overriding the pool's defaults.
public struct JobOptions: Sendable {
    /// How long one job may run. When it expires, the job's worker is terminated (its process
    /// group gets ``ProcessPoolConfiguration/terminationSignal``, then `SIGKILL` after
    /// ``ProcessPoolConfiguration/terminationGracePeriod``), the job fails with
    /// ``ProcessPoolError/Code/timedOut`` (or is retried), and the worker is replaced. Nil: the
    /// pool's ``ProcessPoolConfiguration/jobTimeout``.
    public var timeout: Duration?
    /// How many times a job is run again after its worker crashed or it timed out. Nil: the
    /// pool's ``ProcessPoolConfiguration/maximumRetries``.
    public var maximumRetries: Int?

    /// Options that override the pool's timeout, retries, or both.
    ///
    /// - Parameters:
    ///   - timeout: The longest a job may run; nil for the pool's default.
    ///   - maximumRetries: How often to rerun a job whose worker crashed or that timed out; nil
    ///     for the pool's default.
    public init(timeout: Duration? = nil, maximumRetries: Int? = nil) {
        self.timeout = timeout
        self.maximumRetries = maximumRetries
    }
}

/// Options with the pool's defaults filled in, as a chunk carries them.
struct ResolvedJobOptions: Sendable {
    var timeout: Duration?
    var maximumRetries: Int

    init(timeout: Duration? = nil, maximumRetries: Int = 0) {
        self.timeout = timeout
        self.maximumRetries = maximumRetries
    }

    /// - Throws: ``ProcessPoolError`` if `options` holds a value out of range (the pool's own
    ///   were checked when it started).
    init(_ options: JobOptions, defaults configuration: ProcessPoolConfiguration) throws(ProcessPoolError) {
        try options.validate()
        timeout = options.timeout ?? configuration.jobTimeout
        maximumRetries = max(0, options.maximumRetries ?? configuration.maximumRetries)
    }
}
