/// What workers send: reading their output and diagnostics, and turning frames into results
/// for the callers' sinks.
extension EventLoop {
    /// Reads what the worker has written and acts on every complete frame.
    ///
    /// A read that returns less than it had room for ends the call: the pipe was empty then.
    /// - Parameter untilDrained: Read until the pipe is empty or ended, however much is there
    ///   (for a worker that has exited: everything it sent must be seen before its jobs are
    ///   judged). Otherwise a bounded number of reads keeps one busy worker from starving the rest.
    /// - Returns: Whether there was anything (bytes, or the end of the stream).
    @discardableResult
    func readOutput(of worker: PooledWorker, untilDrained: Bool = false) -> Bool {
        var reads = 0
        var readAnything = false
        while untilDrained || reads < 16 {
            reads += 1
            var ended = false
            var wouldBlock = false
            var drained = false
            var failure: SystemCallError?
            worker.reader.readIntoStorage { buffer in
                let result = Result { () throws(SystemCallError) in try worker.connection.read(into: buffer) }
                switch result {
                case .success(.transferred(let count)):
                    ended = count == 0
                    // Less than there was room for: the pipe held no more, so another read
                    // would only say EAGAIN (a system call per round trip saved).
                    drained = count < buffer.count
                    return count
                case .success(.wouldBlock):
                    wouldBlock = true
                    return 0
                case .failure(let error):
                    ended = true
                    failure = error
                    return 0
                }
            }
            if let failure {
                // Not an end of file: the stream broke, so what the worker had sent cannot be
                // trusted to be complete.
                protocolViolation(by: worker, "its output could not be read: \(failure)")
            }
            if !wouldBlock { readAnything = true }
            if !ended && !wouldBlock { processFrames(of: worker) }
            if ended {
                if worker.outputEndedAt == nil { worker.outputEndedAt = clock.now }
                return readAnything
            }
            if wouldBlock || (drained && !untilDrained) { return readAnything }
        }
        return readAnything
    }

    func readErrorOutput(of worker: PooledWorker) {
        for _ in 0..<16 {
            guard readChunkOfErrorOutput(worker) else { return }
        }
    }

    private func processFrames(of worker: PooledWorker) {
        guard worker.violation == nil else { return }
        do {
            while try worker.reader.nextFrame({ type, body in try handleFrame(type: type, body: body, from: worker) }) != nil {}
        } catch {
            protocolViolation(by: worker, "\(error)")
        }
    }

    private func handleFrame(type: UInt8, body: UnsafeRawBufferPointer, from worker: PooledWorker) throws {
        switch (worker.state, FrameType(rawValue: type)) {
        case (_, .workerHello?) where worker.jobNames.isEmpty && worker.violation == nil:
            // Also when asked to stop before its hello arrived: it started fine.
            let hello = try WorkerHello(body: body)
            worker.jobNames = hello.jobNames
            worker.jobIndexByName = Dictionary(hello.jobNames.enumerated().map { ($1, $0) }, uniquingKeysWith: { first, _ in first })
            worker.idleSince = clock.now
            if worker.state == .starting { worker.state = .ready }
            respawns.noteStartSuccess()
            let names = hello.jobNames
            let waiters = core.state.withLock { $0.workerSaidHello(jobNames: names) }
            for waiter in waiters { waiter.resume(returning: names) }
        case (.starting, _):
            throw WireError("expected the worker's hello, received a frame of type \(type)")
        case (_, .results?):
            try deliverResults(body: body, from: worker)
        case (_, .output?):
            let (header, bytes) = try OutputFrameHeader.read(body: body)
            guard let batch = worker.inFlight.first, batch.id == header.batchID,
                header.position >= batch.resolvedCount, let slice = batch.slice(atBatchPosition: header.position)
            else {
                throw WireError("output for job \(header.position) of batch \(header.batchID), which the worker is not running")
            }
            slice.chunk.sink.receiveOutput(stream: Int(header.stream) - 1, bytes: bytes)
        case (_, .fatal?):
            worker.fatalMessage = fatalMessage(from: body)
        case (_, .workerHello?):
            throw WireError("a second hello")
        default:
            throw WireError("unexpected frame type \(type) from a worker")
        }
    }

    private func deliverResults(body: UnsafeRawBufferPointer, from worker: PooledWorker) throws {
        var results = try ResultsFrameReader(body: body)
        let header = results.header
        guard let batch = worker.inFlight.first, batch.id == header.batchID else {
            throw WireError("results for batch \(header.batchID), which is not the batch the worker is running")
        }
        guard header.firstPosition == batch.resolvedCount, header.count <= batch.count - batch.resolvedCount else {
            throw WireError("results \(header.firstPosition)..<\(header.firstPosition + header.count) for batch \(batch.id) of \(batch.count) jobs, of which \(batch.resolvedCount) were already answered")
        }
        // Read the whole frame before acting on any of it: a frame that turns out malformed
        // half way must leave every one of its jobs unanswered, to be rescued with the rest.
        // The usual frame, all successes, is only checked here, and decoded by its calls.
        let resultBytes = results.remainingBytes
        let allSucceeded = SucceededResults.scan(resultBytes, count: header.count, offsets: &resultOffsets)
        var outcomes: [JobOutcome] = []
        if !allSucceeded {
            outcomes.reserveCapacity(header.count)
            while let outcome = try results.next() { outcomes.append(jobOutcome(outcome, from: worker)) }
        }

        // The results of each slice go to its call's sink as one run.
        var lastName: String?
        var offset = 0
        while offset < header.count {
            let (slice, position) = batch.nextUnresolved()
            let count = min(header.count - offset, batch.unresolvedInCurrentSlice)
            batch.markResolved(count)
            lastName = slice.chunk.jobName
            let (firstIndex, firstJobID) = (slice.inputIndex(at: position), slice.jobID(at: position))
            var run = if allSucceeded {
                ResultRun(
                    firstIndex: firstIndex, firstJobID: firstJobID, jobName: slice.chunk.jobName,
                    succeeded: SucceededResults(bytes: UnsafeRawBufferPointer(rebasing: resultBytes[resultOffsets[offset]..<resultOffsets[offset + count]]), count: count))
            } else {
                ResultRun(firstIndex: firstIndex, firstJobID: firstJobID, jobName: slice.chunk.jobName, outcomes: outcomes[offset..<(offset + count)])
            }
            run.workerProcessID = worker.pid
            slice.chunk.sink.deliver(run)
            offset += count
        }
        if let lastName { batchSizer.record(jobName: lastName, count: header.count, elapsedNanoseconds: header.elapsedNanoseconds, resultBytes: body.count) }
        if batch.resolvedCount == batch.count {
            worker.inFlight.removeFirst()
            // Measured here, so for this machine's workers only: a remote pid names another
            // machine's process (memoryLimit still applies there).
            if let limit = core.configuration.maximumResidentMemory, worker.connection.hostName == nil,
               let resident = residentMemory(of: worker.pid), resident > limit {
                retire(worker)
            }
        }
        // The next job (or batch) starts now.
        worker.runningSince = worker.inFlight.isEmpty ? nil : clock.now
        if worker.inFlight.isEmpty { worker.idleSince = clock.now }
    }

    private func jobOutcome(_ outcome: WireOutcome, from worker: PooledWorker) -> JobOutcome {
        switch outcome {
        case .succeeded(let rawCodec, let payload):
            guard let codec = PayloadCodec(rawValue: rawCodec) else {
                return .failed(workerError(.protocolViolation, "the worker answered with unknown codec \(rawCodec)", worker))
            }
            return .succeeded(codec: codec, payload: payload)
        case .threw(let typeName, let description):
            var error = workerError(.jobThrew, description, worker)
            error.remoteErrorType = typeName
            return .failed(error)
        case .inputDecodingFailed(let description):
            return .failed(workerError(.decodingFailed, "the worker could not decode the input: \(description)", worker))
        case .outputEncodingFailed(let description):
            return .failed(workerError(.encodingFailed, "the worker could not encode the output: \(description)", worker))
        case .unknownJob(let index):
            return .failed(workerError(.unknownJob, "the worker does not serve job index \(index)", worker))
        }
    }

    func workerError(_ code: ProcessPoolError.Code, _ message: String, _ worker: PooledWorker) -> ProcessPoolError {
        var error = ProcessPoolError(code, message)
        error.workerProcessID = worker.pid
        error.executablePath = worker.executablePath
        return error
    }

    /// The worker broke the protocol: kill it; its exit handler fails or requeues its jobs.
    func protocolViolation(by worker: PooledWorker, _ message: String) {
        guard worker.violation == nil else { return }
        worker.violation = message
        worker.state = .stopping
        worker.connection.signal(Signal.kill)
    }

    /// Reads one piece of the worker's stderr, keeps its tail and forwards it; false when
    /// nothing more is there now.
    func readChunkOfErrorOutput(_ worker: PooledWorker) -> Bool {
        let result = readBuffer.withUnsafeMutableBytes { buffer in
            Result { () throws(SystemCallError) in try worker.connection.readDiagnostics(into: buffer) }
        }
        switch result {
        case .success(.transferred(let count)) where count > 0:
            readBuffer.withUnsafeBytes { buffer in
                let bytes = UnsafeRawBufferPointer(rebasing: buffer[0..<count])
                worker.recordStandardError(bytes)
                errorForwarder?.forward(bytes)
            }
            return true
        case .success:
            return false
        case .failure(let error):
            // Its diagnostics are lost from here on; say so where a crash report will show it.
            let note = Array("\n[multiprocessing: the worker's stderr could not be read: \(error)]\n".utf8)
            note.withUnsafeBytes { worker.recordStandardError($0) }
            return false
        }
    }
}
