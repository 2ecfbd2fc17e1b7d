/// When to start workers after others failed to start, and when to give up: a plain value that
/// decides; the event loop starts the processes.
///
/// A worker that dies before its hello, or cannot be spawned at all, is a failed start. After
/// one, replacements wait a backoff (10 ms, doubling, at most 2 s) so that a broken executable
/// does not make the pool spin; after ``startFailureLimit`` in a row with no working worker
/// left, the pool gives up: queued jobs fail and new work is refused.
struct RespawnSchedule {
    static let startFailureLimit = 5

    /// The wait before the next start after `failures` failures in a row.
    static func backoff(afterFailures failures: Int) -> Duration {
        .milliseconds(min(2_000, 10 << min(max(failures, 1) - 1, 10)))
    }

    /// Failed starts since the last worker that completed its hello.
    private(set) var consecutiveFailures = 0
    private(set) var lastFailure: ProcessPoolError?
    /// Replacements waiting for their backoff to pass.
    private(set) var pending = 0
    /// When the next waiting replacement may start; nil when none waits.
    private(set) var dueAt: ContinuousClock.Instant?

    /// Whether workers keep failing to start.
    var workersCannotStart: Bool { consecutiveFailures >= Self.startFailureLimit }

    enum Decision {
        /// Start the replacement now.
        case startNow
        /// It waits for the backoff; ``takeDueStart(now:)`` says when.
        case deferred
        /// Workers cannot be started: fail the pool with this error.
        case giveUp(ProcessPoolError)
    }

    /// A replacement worker is wanted.
    ///
    /// - Parameters:
    ///   - now: The time.
    ///   - noWorkerLeft: Whether the pool has no worker process at all.
    mutating func requestReplacement(now: ContinuousClock.Instant, noWorkerLeft: Bool) -> Decision {
        if workersCannotStart && noWorkerLeft {
            cancelPending()
            return .giveUp(lastFailure ?? ProcessPoolError(.spawnFailed, "workers cannot be started"))
        }
        guard consecutiveFailures > 0 else { return .startNow }
        pending += 1
        if dueAt == nil { dueAt = now + Self.backoff(afterFailures: consecutiveFailures) }
        return .deferred
    }

    /// A worker failed to start.
    ///
    /// - Parameter anyWorkerWorking: Whether some other worker serves jobs.
    /// - Returns: The error to fail the pool with, when it is time to give up: at once once the
    ///   limit is reached with no working worker, rather than at the next respawn (which a
    ///   pending one would skip).
    mutating func noteStartFailure(_ error: ProcessPoolError, anyWorkerWorking: Bool) -> ProcessPoolError? {
        consecutiveFailures += 1
        lastFailure = error
        guard workersCannotStart && !anyWorkerWorking else { return nil }
        cancelPending()
        return error
    }

    /// A worker completed its hello.
    mutating func noteStartSuccess() {
        consecutiveFailures = 0
    }

    /// Whether a waiting replacement is due at `now`; if so it is taken, and the next one (if
    /// any) is due at once.
    mutating func takeDueStart(now: ContinuousClock.Instant) -> Bool {
        guard pending > 0, let dueAt, dueAt <= now else { return false }
        pending -= 1
        self.dueAt = pending > 0 ? now : nil
        return true
    }

    /// Drops the waiting replacements (the pool is stopping or broken).
    mutating func cancelPending() {
        pending = 0
        dueAt = nil
    }
}
