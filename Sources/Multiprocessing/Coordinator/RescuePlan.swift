/// What becomes of the jobs a worker held when it died: which go back to the queue, which
/// fail and with what. A plain value that decides; the event loop carries it out.
///
/// Results arrive in order, so the first unanswered job of the oldest batch is the one that was
/// running. In a batch that reported each result, that pins the death on it; otherwise the
/// worker may have died holding results it had not sent, so each unanswered job of that batch
/// is retried as a suspect (reported one by one) and the next death pins the culprit. Jobs in
/// later batches had not started: they go back to the queue as they were.
struct RescuePlan {
    /// Why the worker is gone, as far as its jobs are concerned.
    enum Cause {
        /// The pool is shutting down and cancelling its work: nothing is rerun.
        case poolCancelled(ProcessPoolError)
        /// The pool stopped the worker because a job it held was cancelled: the other jobs are
        /// blameless and run again.
        case stoppedForCancelledJob
        /// The running job overran its timeout and the pool stopped the worker: it is the
        /// culprit.
        case timedOut(ProcessPoolError)
        /// The worker died (crashed, broke the protocol, ran out of memory) on its own.
        case died(ProcessPoolError)
        /// The worker's host was lost (`host` is its name and why): its jobs are blameless
        /// and run again, without using up their retries, unless they have been on
        /// ``hostLossLimit`` lost hosts.
        case hostLost(host: String, error: ProcessPoolError)
    }

    /// A job that was running on this many hosts when each was lost fails with
    /// ``ProcessPoolError/Code/hostLost`` (as Dask's `allowed-failures` blames a task after 3
    /// workers died under it).
    static let hostLossLimit = 3

    /// Jobs to put back at the front of the queue, in order.
    private(set) var requeue: [ChunkSlice] = []
    /// Jobs that fail, each with its error.
    private(set) var failures: [(slice: ChunkSlice, error: ProcessPoolError)] = []

    /// Decides the fate of a dead worker's jobs.
    ///
    /// - Parameters:
    ///   - unanswered: The jobs of the batch it was running that have no result, in order.
    ///   - reportsEachResult: Whether that batch reported each result as it finished.
    ///   - waiting: The jobs of the batches behind it, which had not started.
    ///   - cause: Why it is gone.
    init(unanswered: [ChunkSlice], reportsEachResult: Bool, waiting: [ChunkSlice], cause: Cause) {
        guard let first = unanswered.first else {
            if case .poolCancelled(let error) = cause {
                failures = waiting.map { ($0, error) }
            } else {
                requeue = waiting
            }
            return
        }
        var culprit = first
        culprit.positions = first.positions.lowerBound..<first.positions.lowerBound + 1
        var others = unanswered
        others[0].positions = others[0].positions.dropFirst()
        others.removeAll { $0.positions.isEmpty }

        switch cause {
        case .poolCancelled(let error):
            failures = (unanswered + waiting).map { ($0, error) }
            return
        case .stoppedForCancelledJob:
            requeue = unanswered
        case .hostLost(let host, let error):
            // The running job is the one lost under the host; those behind it had not started.
            // Neither kind uses a retry.
            var lost = culprit
            lost.lostHosts.append(host)
            if lost.lostHosts.count >= Self.hostLossLimit {
                var final = error
                final.message = "the job was on \(lost.lostHosts.count) hosts that were lost under it: " + lost.lostHosts.joined(separator: "; ")
                failures.append((lost, final))
            } else {
                requeue.append(lost)
            }
            requeue += others
        case .timedOut(let error):
            retryOrFail(culprit, with: error)
            requeue += others
        case .died(let error):
            let unansweredCount = unanswered.reduce(0) { $0 + $1.count }
            if reportsEachResult || unansweredCount == 1 {
                retryOrFail(culprit, with: error)
                requeue += others
            } else {
                for slice in unanswered {
                    var suspects = slice
                    suspects.isSuspect = true
                    requeue.append(suspects)
                }
            }
        }
        requeue += waiting
    }

    /// Retries a job that crashed its worker or timed out, if it has retries left; otherwise
    /// fails it with the errors of all its attempts.
    private mutating func retryOrFail(_ job: ChunkSlice, with error: ProcessPoolError) {
        let history = job.history + [error]
        if history.count <= job.chunk.maximumRetries {
            var retry = job
            retry.isSuspect = true
            retry.history = history
            requeue.append(retry)
        } else {
            var final = error
            if history.count > 1 {
                final.attempts = history
                final.message += "; given up after \(history.count) attempts"
            }
            failures.append((job, final))
        }
    }
}
