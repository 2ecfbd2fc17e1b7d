/// A batch sent to a worker and not yet fully answered.
final class InFlightBatch {
    let id: UInt64
    let flags: BatchFlags
    let slices: [ChunkSlice]
    let count: Int
    /// Results arrive in order; this many have.
    private(set) var resolvedCount = 0
    private var cursorSlice = 0
    private var cursorPosition: Int

    init(id: UInt64, flags: BatchFlags, slices: [ChunkSlice]) {
        self.id = id
        self.flags = flags
        self.slices = slices
        count = slices.reduce(0) { $0 + $1.count }
        cursorPosition = slices.first?.positions.lowerBound ?? 0
    }

    /// The next job without a result: its slice and position in the chunk.
    func nextUnresolved() -> (slice: ChunkSlice, position: Int) {
        (slices[cursorSlice], cursorPosition)
    }

    /// The slice holding the job at `position` in the batch, if the batch has one there.
    func slice(atBatchPosition position: Int) -> ChunkSlice? {
        var start = 0
        for slice in slices {
            if position < start + slice.count { return slice }
            start += slice.count
        }
        return nil
    }

    func markNextResolved() {
        resolvedCount += 1
        cursorPosition += 1
        if cursorPosition == slices[cursorSlice].positions.upperBound && cursorSlice + 1 < slices.count {
            cursorSlice += 1
            cursorPosition = slices[cursorSlice].positions.lowerBound
        }
    }

    /// Whether any job without a result belongs to a call that no longer wants results.
    /// Checked on every turn of the event loop, so it allocates nothing.
    var hasUnwantedJob: Bool {
        guard resolvedCount < count else { return false }
        for index in cursorSlice..<slices.count where !slices[index].chunk.sink.isAcceptingResults {
            return true
        }
        return false
    }

    /// The jobs without a result, as slices.
    func unresolvedSlices() -> [ChunkSlice] {
        guard resolvedCount < count else { return [] }
        var result: [ChunkSlice] = []
        var first = slices[cursorSlice]
        first.positions = cursorPosition..<first.positions.upperBound
        if !first.positions.isEmpty { result.append(first) }
        result.append(contentsOf: slices[(cursorSlice + 1)...])
        return result
    }
}

/// One worker process as the event loop sees it. Touched only on the event loop's thread.
final class WorkerConnection {
    enum State: Equatable {
        /// Spawned; its hello has not arrived.
        case starting
        /// Taking jobs.
        case ready
        /// Asked to exit (input closed or signalled); no new jobs.
        case stopping
    }

    let process: ChildProcess
    /// Our end of the worker's stdin (non-blocking).
    let input: FileDescriptor
    /// Our end of the worker's stdout (non-blocking).
    let output: FileDescriptor
    /// Our end of the worker's stderr (non-blocking).
    let errorOutput: FileDescriptor

    var state = State.starting
    var jobNames: [String] = []
    var jobIndexByName: [String: Int] = [:]
    var reader: FrameReader
    var outgoing = WireWriter(reservingCapacity: 64 * 1024)
    var outgoingOffset = 0
    var inFlight: [InFlightBatch] = []
    var inputClosed = false
    var outputEnded = false
    var errorOutputEnded = false
    /// Why the worker is being killed, when it broke the protocol.
    var violation: String?
    /// What the worker said in a fatal frame before exiting.
    var fatalMessage: String?
    /// When to escalate to SIGKILL, once a termination has begun.
    var killDeadline: ContinuousClock.Instant?
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

    enum TerminationReason {
        /// The running job exceeded its timeout after running this long.
        case timedOut(ran: Duration, limit: Duration)
        /// A job it had was cancelled.
        case cancelled
    }
    private var errorTail: [UInt8] = []

    /// When the worker was spawned, for the handshake timeout.
    let spawnedAt: ContinuousClock.Instant
    /// The executable it runs, for start-up errors.
    let executablePath: String
    /// Its slot number, 1…workerCount (GNU parallel's `{%}`).
    let slot: Int

    init(
        process: ChildProcess, input: FileDescriptor, output: FileDescriptor, errorOutput: FileDescriptor,
        maximumFrameSize: Int, spawnedAt: ContinuousClock.Instant, executablePath: String, slot: Int
    ) {
        self.slot = slot
        self.spawnedAt = spawnedAt
        self.executablePath = executablePath
        self.process = process
        self.input = input
        self.output = output
        self.errorOutput = errorOutput
        reader = FrameReader(maximumFrameSize: maximumFrameSize)
    }

    var pid: Int32 { process.pid }
    var pendingOutgoingBytes: Int { outgoing.bytes.count - outgoingOffset }
    var isIdle: Bool { inFlight.isEmpty && pendingOutgoingBytes == 0 }

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

    /// Writes as much of the outgoing buffer as the pipe takes now.
    /// - Returns: false if the worker's stdin is broken (it exited).
    func flushOutgoing() -> Bool {
        // Once closed, the descriptor number may already belong to someone else.
        guard !inputClosed else { return false }
        while pendingOutgoingBytes > 0 {
            let result = outgoing.bytes.withUnsafeBytes { bytes in
                Result { () throws(SystemCallError) in try input.write(UnsafeRawBufferPointer(rebasing: bytes[outgoingOffset...])) }
            }
            switch result {
            case .success(.transferred(let count)):
                outgoingOffset += count
            case .success(.wouldBlock):
                return true
            case .failure:
                outgoing.bytes.removeAll()
                outgoingOffset = 0
                return false
            }
        }
        // Keep a modest buffer; let a huge one go once a large payload has been sent.
        outgoing.bytes.removeAll(keepingCapacity: outgoing.bytes.capacity <= 4 << 20)
        outgoingOffset = 0
        return true
    }

    func closeInput() {
        guard !inputClosed else { return }
        inputClosed = true
        input.close()
        outgoing.bytes.removeAll()
        outgoingOffset = 0
    }

    /// The worker's stdin is broken (it exited or closed it): take no more jobs; its exit
    /// handler rescues what it had.
    func inputBroke() {
        closeInput()
        if state != .starting || !jobNames.isEmpty { state = .stopping }
    }

    func closeAll() {
        closeInput()
        output.close()
        errorOutput.close()
        process.closeExitDescriptor()
    }
}
