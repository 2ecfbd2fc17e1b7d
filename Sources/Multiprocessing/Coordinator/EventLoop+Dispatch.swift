/// Sending queued jobs to workers, in batches sized by ``BatchSizer``, and failing jobs that
/// cannot be sent.
extension EventLoop {
    /// Payloads at least this large are written from their chunk rather than copied.
    static let sharedPayloadThreshold = 64 * 1024
    static let maximumBatchBytes = 4 << 20
    /// The most a job adds to a jobs frame besides its payload: index and length varints, codec.
    static let jobHeaderBytes = 16

    /// A batch must fit in one frame, whatever the configured frame limit.
    private var maximumBatchBytes: Int {
        min(Self.maximumBatchBytes, WireProtocol.maximumPayloadSize(inFramesOf: core.configuration.maximumFrameSize))
    }

    /// Fills every ready worker's pipeline from the queue, and writes what it can now.
    func dispatchWork() {
        for worker in workers where worker.state == .ready {
            while worker.state == .ready && worker.inFlight.count < batchSizer.pipelineDepth(behind: worker.inFlight.first)
                && worker.pendingOutgoingBytes < Self.maximumBatchBytes {
                let workerCount = max(1, workers.count)
                let allowance = core.configuration.maximumJobsPerWorker.map { max(1, $0 - worker.jobsSent) } ?? Int.max
                let sizer = batchSizer
                let (slices, waiters) = core.state.withLock { state in
                    state.takeBatch(maximumBytes: maximumBatchBytes, overheadPerJob: Self.jobHeaderBytes) { jobName, queuedJobs in
                        min(allowance, sizer.batchLimit(jobName: jobName, queuedJobs: queuedJobs, workerCount: workerCount))
                    }
                }
                for waiter in waiters { waiter.resume() }
                guard !slices.isEmpty else { break }
                send(slices, to: worker)
                if let limit = core.configuration.maximumJobsPerWorker, worker.jobsSent >= limit {
                    retire(worker)
                }
            }
            if worker.pendingOutgoingBytes > 0 && !worker.flushOutgoing() {
                worker.inputBroke()
            }
        }
        // Every worker (all of them started) holding all it may: the next report from one of
        // them brings the loop back here, so new jobs need not wake it.
        let saturated = !workers.isEmpty && workers.count >= capacity
            && workers.allSatisfy { $0.state == .ready && $0.inFlight.count >= batchSizer.pipelineDepth(behind: $0.inFlight.first) }
        if core.state.withLock({ $0.loopSaturated(saturated) }) {
            // Work queued while the flag said the loop would look: it has not, so make the
            // coming poll return at once and send it.
            core.waker.wake()
        }
    }

    /// Writes `slices` into a jobs frame for `worker` and records the batch as in flight.
    private func send(_ slices: [ChunkSlice], to worker: PooledWorker) {
        // Jobs the worker does not serve fail here, without a round trip.
        var sendable: [ChunkSlice] = []
        var unknown: [ChunkSlice] = []
        for slice in slices {
            if worker.jobIndexByName[slice.chunk.jobName] != nil { sendable.append(slice) } else { unknown.append(slice) }
        }
        for slice in unknown {
            var error = ProcessPoolError(.unknownJob, "no worker serves a job named \"\(slice.chunk.jobName)\"")
            error.availableJobNames = worker.jobNames
            error.workerProcessID = worker.pid
            deliverFailure(error, to: slice)
        }
        guard !sendable.isEmpty else { return }
        let flags: BatchFlags = sendable[0].needsEachResult ? .reportEachResult : []
        let batch = InFlightBatch(id: nextBatchID, flags: flags, slices: sendable)
        nextBatchID += 1
        let frame = JobsFrameWriter(batchID: batch.id, flags: flags, count: batch.count, into: &worker.outgoing.frames)
        var externalBytes = 0
        for slice in sendable {
            let jobIndex = worker.jobIndexByName[slice.chunk.jobName]!
            // Runs of small payloads are copied into the frame in one pass each; a large one
            // is sent from the chunk itself (a gathering write), not copied into the buffer.
            var position = slice.positions.lowerBound
            while position < slice.positions.upperBound {
                position = slice.chunk.appendJobs(
                    position..<slice.positions.upperBound, jobIndex: jobIndex, largeThreshold: Self.sharedPayloadThreshold, to: frame, in: &worker.outgoing.frames)
                guard position < slice.positions.upperBound else { break }
                let range = slice.chunk.payloadRange(at: position)
                frame.appendHeader(jobIndex: jobIndex, codec: slice.chunk.codec.rawValue, payloadSize: range.count, into: &worker.outgoing.frames)
                worker.outgoing.appendShared(slice.chunk, range)
                externalBytes += range.count
                position += 1
            }
        }
        do {
            try frame.end(into: &worker.outgoing.frames, externalBytes: externalBytes, maximumFrameSize: core.configuration.maximumFrameSize)
        } catch {
            worker.outgoing.dropShared(from: frame.start)
            // Cannot happen for one job (inputs are checked against the limit when encoded),
            // and batches stay far below it; fail the jobs rather than the pool.
            for slice in sendable { deliverFailure(ProcessPoolError(.encodingFailed, "\(error)"), to: slice) }
            return
        }
        if worker.inFlight.isEmpty { worker.runningSince = clock.now }
        worker.inFlight.append(batch)
        worker.jobsSent += batch.count
        worker.idleSince = nil
    }

    /// Fails every queued job with `error`, and lets callers waiting for room retry.
    func failQueued(with error: ProcessPoolError) {
        let (queued, waiters) = core.state.withLock { $0.cancelQueued() }
        for waiter in waiters { waiter.resume() }
        for slice in queued { deliverFailure(error, to: slice) }
    }

    /// Carries out what a transition of the scheduler state released: queued jobs fail with
    /// `error`, and every caller that waited is resumed (with `error` where it expects a value).
    func carryOut(_ release: SchedulerState.Release, failingWith error: ProcessPoolError) {
        for waiter in release.jobNameWaiters { waiter.resume(throwing: error) }
        for waiter in release.spaceWaiters { waiter.resume() }
        for slice in release.queued { deliverFailure(error, to: slice) }
        for waiter in release.shutdownWaiters { waiter.resume() }
    }

    /// Fails every job of `slice` with `error`, through its call's sink.
    func deliverFailure(_ error: ProcessPoolError, to slice: ChunkSlice) {
        slice.chunk.sink.deliver(ResultRun(
            firstIndex: slice.inputIndex(at: slice.positions.lowerBound),
            firstJobID: slice.jobID(at: slice.positions.lowerBound),
            jobName: slice.chunk.jobName,
            outcomes: Array(repeating: .failed(error), count: slice.count)))
    }
}
