/// A batch sent to a worker and not yet fully answered.
final class InFlightBatch {
    let id: UInt64
    let flags: BatchFlags
    let slices: [ChunkSlice]
    let count: Int
    /// The bytes of its inputs.
    let byteCount: Int
    /// Results arrive in order; this many have.
    private(set) var resolvedCount = 0
    private var cursorSlice = 0
    private var cursorPosition: Int

    init(id: UInt64, flags: BatchFlags, slices: [ChunkSlice]) {
        self.id = id
        self.flags = flags
        self.slices = slices
        count = slices.reduce(0) { $0 + $1.count }
        byteCount = slices.reduce(0) { $0 + $1.byteCount }
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

    /// How many jobs of the slice at the cursor have no result yet.
    var unresolvedInCurrentSlice: Int { slices[cursorSlice].positions.upperBound - cursorPosition }

    /// Marks the next `count` jobs resolved; they must all be in the slice at the cursor.
    func markResolved(_ count: Int) {
        precondition(count > 0 && count <= unresolvedInCurrentSlice, "results beyond the current slice")
        resolvedCount += count - 1
        cursorPosition += count - 1
        markNextResolved()
    }

    private func markNextResolved() {
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
    /// Large payloads queued for the worker, sent straight from their chunks rather than copied
    /// into `outgoing`: each goes out after the first `after` bytes of `outgoing`.
    private(set) var sharedPayloads: [SharedPayload] = []
    /// How much of the first shared payload has been written.
    private var sharedOffset = 0
    private var sharedByteCount = 0

    struct SharedPayload {
        let chunk: JobChunk
        let range: Range<Int>
        let after: Int
    }
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
    var pendingOutgoingBytes: Int { outgoing.bytes.count - outgoingOffset + sharedByteCount - sharedOffset }

    /// Queues `range` of `chunk`'s bytes to follow what `outgoing` holds now.
    func queueShared(_ chunk: JobChunk, _ range: Range<Int>) {
        sharedPayloads.append(SharedPayload(chunk: chunk, range: range, after: outgoing.bytes.count))
        sharedByteCount += range.count
    }

    /// Drops shared payloads queued at or after `position` of `outgoing` (a frame abandoned
    /// while being built); returns their total size.
    func dropShared(from position: Int) {
        while let last = sharedPayloads.last, last.after >= position {
            sharedPayloads.removeLast()
            sharedByteCount -= last.range.count
        }
    }
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

    /// Writes as much of the outgoing bytes as the pipe takes now.
    /// - Returns: false if the worker's stdin is broken (it exited).
    func flushOutgoing() -> Bool {
        // Once closed, the descriptor number may already belong to someone else.
        guard !inputClosed else { return false }
        while pendingOutgoingBytes > 0 {
            let result: Result<FileDescriptor.IOResult, SystemCallError>
            if sharedPayloads.isEmpty {
                result = outgoing.bytes.withUnsafeBytes { bytes in
                    Result { () throws(SystemCallError) in try input.write(UnsafeRawBufferPointer(rebasing: bytes[outgoingOffset...])) }
                }
            } else {
                result = writeGathering()
            }
            switch result {
            case .success(.transferred(let count)):
                advance(by: count)
            case .success(.wouldBlock):
                return true
            case .failure:
                clearOutgoing()
                return false
            }
        }
        // Keep a modest buffer; let a huge one go once a large payload has been sent.
        outgoing.bytes.removeAll(keepingCapacity: outgoing.bytes.capacity <= 4 << 20)
        outgoingOffset = 0
        return true
    }

    /// One `writev` of the owned bytes and the first few shared payloads, in stream order.
    private func writeGathering() -> Result<FileDescriptor.IOResult, SystemCallError> {
        let shared = sharedPayloads.prefix(4)
        return outgoing.bytes.withUnsafeBytes { owned in
            withSharedBytes(shared[...]) { payloads in
                var buffers: [UnsafeRawBufferPointer] = []
                var position = outgoingOffset
                for (index, payload) in shared.enumerated() {
                    if payload.after > position {
                        buffers.append(UnsafeRawBufferPointer(rebasing: owned[position..<payload.after]))
                        position = payload.after
                    }
                    let skip = index == 0 ? sharedOffset : 0
                    buffers.append(UnsafeRawBufferPointer(rebasing: payloads[index][(payload.range.lowerBound + skip)..<payload.range.upperBound]))
                }
                let end = shared.count == sharedPayloads.count ? owned.count : sharedPayloads[shared.count].after
                if end > position { buffers.append(UnsafeRawBufferPointer(rebasing: owned[position..<end])) }
                return Result { () throws(SystemCallError) in try input.write(gathering: buffers) }
            }
        }
    }

    /// Calls `body` with the bytes of each payload's chunk, all valid during the call.
    private func withSharedBytes<R>(_ payloads: ArraySlice<SharedPayload>, _ collected: [UnsafeRawBufferPointer] = [], _ body: ([UnsafeRawBufferPointer]) -> R) -> R {
        guard let first = payloads.first else { return body(collected) }
        return first.chunk.withBytes { bytes in withSharedBytes(payloads.dropFirst(), collected + [bytes], body) }
    }

    /// Marks `count` bytes of the stream (owned and shared, in order) as written.
    private func advance(by count: Int) {
        var remaining = count
        while remaining > 0 {
            if let first = sharedPayloads.first, outgoingOffset == first.after {
                let left = first.range.count - sharedOffset
                let step = min(left, remaining)
                sharedOffset += step
                remaining -= step
                if sharedOffset == first.range.count {
                    sharedPayloads.removeFirst()
                    sharedByteCount -= first.range.count
                    sharedOffset = 0
                }
            } else {
                let end = sharedPayloads.first?.after ?? outgoing.bytes.count
                let step = min(end - outgoingOffset, remaining)
                outgoingOffset += step
                remaining -= step
            }
        }
    }

    private func clearOutgoing() {
        outgoing.bytes.removeAll()
        outgoingOffset = 0
        sharedPayloads.removeAll()
        sharedOffset = 0
        sharedByteCount = 0
    }

    func closeInput() {
        guard !inputClosed else { return }
        inputClosed = true
        input.close()
        clearOutgoing()
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
