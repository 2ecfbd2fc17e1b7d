/// How many jobs go in a batch, and how many batches a worker holds: decided from measured job
/// costs, with no process involved (the event loop asks and does what it says).
///
/// A batch aims at ``targetBatchNanoseconds`` of work, so that per-batch costs (a write, a
/// read, two wake-ups) vanish next to the jobs, while the last batches of a call still spread
/// over all workers.
struct BatchSizer {
    /// Batches in flight per worker: one running, one waiting in the pipe.
    static let pipelineDepth = 2
    /// A pessimistic pipe transfer rate (500 MB/s), to tell when sending a batch takes about
    /// as long as running it.
    static let nanosecondsPerByteSent = 2.0

    let targetBatchNanoseconds: Double
    /// A batch size set by the user (``ProcessPoolConfiguration/batchSize``), overriding all this.
    let fixedBatchSize: Int?
    /// The spin's length in nanoseconds: a batch due within it is waited for by spinning.
    let spinNanoseconds: Double
    /// Measured nanoseconds per job, by job name (an exponentially weighted average).
    private(set) var costPerJob: [String: Double] = [:]
    /// The bytes of a job's result, on average, by job name: large outputs take time to send
    /// back, which a waiting batch can overlap.
    private var outputBytesPerJob: [String: Double] = [:]

    init(targetBatchDuration: Duration, fixedBatchSize: Int?, spinDuration: Duration) {
        targetBatchNanoseconds = max(1_000, Self.nanoseconds(targetBatchDuration))
        self.fixedBatchSize = fixedBatchSize
        spinNanoseconds = Self.nanoseconds(spinDuration)
    }

    private static func nanoseconds(_ duration: Duration) -> Double {
        let (seconds, attoseconds) = duration.components
        return Double(seconds) * 1e9 + Double(attoseconds) / 1e9
    }

    /// Takes in a batch's measured time.
    mutating func record(jobName: String, count: Int, elapsedNanoseconds: UInt64, resultBytes: Int) {
        guard count > 0 else { return }
        let sample = Double(elapsedNanoseconds) / Double(count)
        let bytes = Double(resultBytes) / Double(count)
        if let previous = costPerJob[jobName] {
            costPerJob[jobName] = previous * 0.7 + sample * 0.3
            outputBytesPerJob[jobName] = (outputBytesPerJob[jobName] ?? bytes) * 0.7 + bytes * 0.3
        } else {
            costPerJob[jobName] = sample
            outputBytesPerJob[jobName] = bytes
        }
    }

    /// The most jobs of `jobName` to put in the next batch.
    ///
    /// - Parameters:
    ///   - queuedJobs: How many jobs are waiting.
    ///   - workerCount: How many workers share them.
    func batchLimit(jobName: String, queuedJobs: Int, workerCount: Int) -> Int {
        if let fixedBatchSize { return max(1, fixedBatchSize) }
        // Until a job of this kind has been timed, send one to time it.
        guard let cost = costPerJob[jobName] else { return 1 }
        let byCost = Int(min(targetBatchNanoseconds / max(cost, 1), Double(Int.max / 2)))
        // Leave work for every worker's pipeline, so the end of a call is not one long batch.
        let (product, overflow) = Self.pipelineDepth.multipliedReportingOverflow(by: max(1, workerCount))
        let spread = overflow ? Int.max : product
        let bySpread = queuedJobs / spread + (queuedJobs % spread == 0 ? 0 : 1)
        return max(1, min(byCost, bySpread, 1 << 16))
    }

    /// How many batches a worker running `running` may hold.
    ///
    /// A second batch waits in the pipe only behind a batch known to be short: that hides the
    /// round trip between tiny batches, while long jobs (a command, a chunk of work) go to
    /// whichever worker is free first instead of queueing behind a busy one. Behind a batch
    /// whose inputs take about as long to send as to process (large payloads), the next one is
    /// sent too, so that the transfer overlaps the work.
    func pipelineDepth(behind running: InFlightBatch?) -> Int {
        guard let running else { return 1 }
        let jobName = running.nextUnresolved().slice.chunk.jobName
        guard let cost = costPerJob[jobName] else { return 1 }
        let work = cost * Double(running.count)
        let bytes = Double(running.byteCount) + Double(running.count) * (outputBytesPerJob[jobName] ?? 0)
        let transfer = bytes * Self.nanosecondsPerByteSent
        guard work < targetBatchNanoseconds * 2 || work < transfer else { return 1 }
        return Self.pipelineDepth
    }

    /// Whether `worker` runs a batch measured to take less than the spin: then the loop looks
    /// for its answer before going to sleep.
    ///
    /// Never for a worker on another machine: the loop itself reads its host's connection, so
    /// its answer cannot come while the loop spins on it.
    func answerIsDueSoon(from worker: PooledWorker) -> Bool {
        guard worker.connection.hostName == nil, let running = worker.inFlight.first, let cost = costPerJob[running.nextUnresolved().slice.chunk.jobName] else { return false }
        return cost * Double(running.count - running.resolvedCount) < spinNanoseconds
    }
}
