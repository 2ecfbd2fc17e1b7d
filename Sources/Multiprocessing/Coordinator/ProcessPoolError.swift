/// The one error type the pool throws: a code saying what kind of failure it was, and the
/// context needed to act on it (which job, which input, which worker, what it printed).
public struct ProcessPoolError: Error, Sendable, CustomStringConvertible {
    /// The kind of failure. New codes may be added; switch with a `default` case.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        enum Storage: Hashable, Sendable {
            case jobThrew, workerCrashed, unknownJob, encodingFailed, decodingFailed
            case spawnFailed, poolShutDown, protocolViolation, timedOut, memoryLimitExceeded
            case invalidConfiguration, hostLost
        }

        let storage: Storage

        /// The job's `run` threw; ``ProcessPoolError/remoteErrorType`` and
        /// ``ProcessPoolError/message`` carry the error's type and description from the worker.
        public static let jobThrew = Code(storage: .jobThrew)
        /// The worker process died while running the job (a trap, `fatalError`, a signal, `exit`).
        public static let workerCrashed = Code(storage: .workerCrashed)
        /// The worker does not serve a job of this name.
        public static let unknownJob = Code(storage: .unknownJob)
        /// An input or output could not be encoded.
        public static let encodingFailed = Code(storage: .encodingFailed)
        /// An input or output could not be decoded.
        public static let decodingFailed = Code(storage: .decodingFailed)
        /// A worker process could not be started.
        public static let spawnFailed = Code(storage: .spawnFailed)
        /// The pool was shut down before the job could run.
        public static let poolShutDown = Code(storage: .poolShutDown)
        /// A worker broke the wire protocol (or is not a worker at all).
        public static let protocolViolation = Code(storage: .protocolViolation)
        /// The job ran longer than its timeout; its worker was terminated.
        public static let timedOut = Code(storage: .timedOut)
        /// The job needed more memory than ``ProcessPoolConfiguration/memoryLimit`` allows; its
        /// worker died and was replaced.
        public static let memoryLimitExceeded = Code(storage: .memoryLimitExceeded)
        /// A ``ProcessPoolConfiguration`` field or a ``JobOptions`` value is out of range
        /// (negative, zero where a positive value is needed, or too large to mean anything);
        /// ``ProcessPoolError/message`` names the field and its value.
        public static let invalidConfiguration = Code(storage: .invalidConfiguration)
        /// The job was on hosts that were lost under it (their connection ended or stopped
        /// answering) as many times as a job may be, or no host is left to run it;
        /// ``ProcessPoolError/message`` names each host and why it was lost.
        public static let hostLost = Code(storage: .hostLost)

        public var description: String {
            switch storage {
            case .jobThrew: return "jobThrew"
            case .workerCrashed: return "workerCrashed"
            case .unknownJob: return "unknownJob"
            case .encodingFailed: return "encodingFailed"
            case .decodingFailed: return "decodingFailed"
            case .spawnFailed: return "spawnFailed"
            case .poolShutDown: return "poolShutDown"
            case .protocolViolation: return "protocolViolation"
            case .timedOut: return "timedOut"
            case .memoryLimitExceeded: return "memoryLimitExceeded"
            case .invalidConfiguration: return "invalidConfiguration"
            case .hostLost: return "hostLost"
            }
        }
    }

    /// What kind of failure this is.
    public var code: Code
    /// What went wrong, in words: the job's error description, the decoder's complaint, the
    /// protocol rule that was broken.
    public var message: String
    /// The name of the job concerned, if one is.
    public var jobName: String?
    /// The position of the job's input in the sequence given to `map` and its relatives, or nil
    /// for a job given to `submit`.
    public var inputIndex: Int?
    /// The pool's id for the job (unique within the pool), if one was assigned.
    public var jobID: UInt64?
    /// The process id of the worker concerned.
    public var workerProcessID: Int32?
    /// How the worker ended, for ``Code/workerCrashed``.
    public var terminationStatus: TerminationStatus?
    /// The type of the error the job threw in the worker, for ``Code/jobThrew``.
    public var remoteErrorType: String?
    /// The last lines the worker wrote to its standard error before it died.
    public var standardErrorTail: String?
    /// The worker's executable: the one that could not start (``Code/spawnFailed``), or the
    /// one whose worker ran the job.
    public var executablePath: String?
    /// The error number behind a failed system call.
    public var errno: Errno?
    /// The resource limit the failed system call ran into, with its value, when its error
    /// number points at one: e.g. `RLIMIT_NPROC (processes and threads per user) is 6` for a
    /// process or thread that could not be started with `EAGAIN`.
    public var resourceLimit: String?
    /// The names of the jobs the worker serves, for ``Code/unknownJob``.
    public var availableJobNames: [String]?
    /// For a job that was retried: the error of every attempt, oldest first (this error is the
    /// last of them).
    public var attempts: [ProcessPoolError] = []

    init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// An error for a system call of the coordinator's own that failed: `context` says what it
    /// was for; the message names the call, and ``errno`` is its error number.
    init(systemCallFailure failure: SystemCallError, _ context: String, code: Code = .spawnFailed) {
        self.init(code, "\(context): \(failure.call) failed")
        errno = failure.errno
        resourceLimit = ThisProcess.resourceLimitNote(call: failure.call, errno: failure.errno)
    }

    /// A copy with the job's identity filled in.
    func forJob(name: String, inputIndex: Int?) -> ProcessPoolError {
        var copy = self
        copy.jobName = copy.jobName ?? name
        copy.inputIndex = copy.inputIndex ?? inputIndex
        return copy
    }

    /// One paragraph: what failed, where, and the context, e.g.
    /// `workerCrashed: job "count-primes" (input 17) — worker 4242 ended with signal SIGSEGV (11)`.
    public var description: String {
        var text = "\(code)"
        if let jobName {
            text += ": job \"\(jobName)\""
            if let inputIndex { text += " (input \(inputIndex))" }
            if let jobID { text += " [id \(jobID)]" }
        }
        text += " — " + message
        if let remoteErrorType { text += " [\(remoteErrorType)]" }
        if let workerProcessID { text += "; worker pid \(workerProcessID)" }
        if let terminationStatus { text += ", \(terminationStatus)" }
        if let executablePath { text += "; executable \(executablePath)" }
        if let errno { text += ": \(errno)" }
        if let resourceLimit { text += "; the limit \(resourceLimit)" }
        if let availableJobNames {
            text += "; the worker serves: " + (availableJobNames.isEmpty ? "no jobs" : availableJobNames.map { "\"\($0)\"" }.joined(separator: ", "))
        }
        if attempts.count > 1 {
            text += "\nattempts (\(attempts.count)):"
            for (number, attempt) in attempts.enumerated() {
                text += "\n  \(number + 1). \(attempt.code) — \(attempt.message)"
                if let status = attempt.terminationStatus { text += ", \(status)" }
            }
        }
        if let standardErrorTail, !standardErrorTail.isEmpty {
            text += "\nlast lines of the worker's stderr:\n" + standardErrorTail
        }
        return text
    }
}
