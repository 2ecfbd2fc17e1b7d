/// Encoded inputs of consecutive jobs of one call (`submit`, `map`, …), stored back to back.
///
/// Immutable once built, so queue entries and in-flight batches can share it without copies;
/// a ``ChunkSlice`` names the part of it a queue entry or batch covers.
final class JobChunk: Sendable {
    let sink: any ResultSink
    let jobName: String
    let codec: PayloadCodec
    /// The input index of the chunk's first job (0 for `submit`).
    let firstIndex: Int
    /// The first job's pool-wide id; job `k` of the chunk has id `firstJobID + k`.
    let firstJobID: UInt64
    /// How long each job may run before its worker is terminated; nil for no limit.
    let timeout: Duration?
    /// How many times a job is run again after its worker crashed or it timed out.
    let maximumRetries: Int
    private let bytes: [UInt8]
    /// Where the payloads start in `bytes` (after scratch space a caller encoded around).
    private let start: Int
    /// `ends[k]` is the offset just past job k's payload, from `start`.
    private let ends: [Int]

    init(
        sink: any ResultSink, jobName: String, codec: PayloadCodec, firstIndex: Int, firstJobID: UInt64,
        options: ResolvedJobOptions, bytes: [UInt8], start: Int = 0, ends: [Int]
    ) {
        self.sink = sink
        self.jobName = jobName
        self.codec = codec
        self.firstIndex = firstIndex
        self.firstJobID = firstJobID
        timeout = options.timeout
        maximumRetries = options.maximumRetries
        self.bytes = bytes
        self.start = start
        self.ends = ends
    }

    var count: Int { ends.count }
    var byteCount: Int { bytes.count - start }

    func payloadSize(at position: Int) -> Int {
        ends[position] - (position == 0 ? 0 : ends[position - 1])
    }

    func byteCount(of range: Range<Int>) -> Int {
        guard !range.isEmpty else { return 0 }
        return ends[range.upperBound - 1] - (range.lowerBound == 0 ? 0 : ends[range.lowerBound - 1])
    }

    /// Where job `position`'s payload lies in the chunk's bytes.
    func payloadRange(at position: Int) -> Range<Int> {
        (position == 0 ? 0 : ends[position - 1])..<ends[position]
    }

    /// Appends jobs from the start of `positions` to `frame` (see
    /// ``JobsFrameWriter/appendJobs(_:of:ends:jobIndex:codec:largeThreshold:into:)``), stopping
    /// before the first payload of `largeThreshold` bytes or more: those are sent from the chunk.
    /// Returns the position it stopped at: `positions.upperBound` if it appended them all.
    func appendJobs(_ positions: Range<Int>, jobIndex: Int, largeThreshold: Int, to frame: JobsFrameWriter, in writer: inout WireWriter) -> Int {
        withBytes { payloads in
            frame.appendJobs(
                positions, of: payloads, ends: ends, jobIndex: jobIndex, codec: codec.rawValue,
                largeThreshold: largeThreshold, into: &writer)
        }
    }

    /// All the chunk's bytes, valid during the call.
    func withBytes<Result>(_ body: (UnsafeRawBufferPointer) throws -> Result) rethrows -> Result {
        try bytes.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[start...])) }
    }
}

/// A run of consecutive jobs of one chunk.
struct ChunkSlice {
    let chunk: JobChunk
    var positions: Range<Int>
    /// Set on jobs that were in a batch whose worker died without saying which job it was
    /// running, and on jobs being retried: they go out in batches whose results are reported
    /// one by one, so a crash can be pinned on the job that caused it.
    var isSuspect = false
    /// The failures of this job's earlier attempts (only on one-job slices).
    var history: [ProcessPoolError] = []
    /// The hosts that were lost while this slice ran there, each as `name: reason`; such losses
    /// do not use up the job's retries (``RescuePlan/hostLossLimit``).
    var lostHosts: [String] = []

    /// Whether this slice's jobs must go out in a batch that reports each result at once.
    var needsEachResult: Bool { isSuspect || chunk.timeout != nil }

    var count: Int { positions.count }
    var byteCount: Int { chunk.byteCount(of: positions) }

    func inputIndex(at position: Int) -> Int { chunk.firstIndex + position }
    func jobID(at position: Int) -> UInt64 { chunk.firstJobID + UInt64(position) }
}

/// Builds a chunk by encoding inputs one after another into one buffer.
struct ChunkBuilder {
    private var bytes: [UInt8] = []
    private var start = 0
    private var ends: [Int] = []
    let codec: PayloadCodec
    let maximumFrameSize: Int

    init(codec: PayloadCodec, maximumFrameSize: Int, expectedCount: Int = 0) {
        self.codec = codec
        self.maximumFrameSize = maximumFrameSize
        ends.reserveCapacity(expectedCount)
    }

    var count: Int { ends.count }
    var byteCount: Int { bytes.count - start }

    /// Encodes `input` as the next job.
    /// - Throws: The encoder's error, or a message if the payload exceeds the frame limit;
    ///   the chunk is left as it was.
    mutating func append<Input: Encodable>(_ input: Input) throws(ProcessPoolError) {
        let start = bytes.count
        do {
            try PayloadCoding.encode(input, codec: codec, into: &bytes)
        } catch {
            bytes.removeSubrange(start...)
            throw ProcessPoolError(.encodingFailed, "cannot encode the input (\(Input.self)): " + PayloadCoding.describe(error))
        }
        let size = bytes.count - start
        let limit = WireProtocol.maximumPayloadSize(inFramesOf: maximumFrameSize)
        guard size <= limit else {
            bytes.removeSubrange(start...)
            throw ProcessPoolError(.encodingFailed, "the encoded input is \(size) bytes; frames of at most \(maximumFrameSize) bytes (maximumFrameSize) carry inputs of up to \(limit) bytes")
        }
        ends.append(bytes.count)
    }

    /// Encodes each integer of `values` as the next job: what `append` does for each, in one
    /// loop without generic dispatch. Integers never exceed the frame limit.
    mutating func appendIntegers(_ values: Range<Int>) {
        precondition(codec == .binary, "integer runs are encoded in the binary codec")
        bytes.reserveCapacity(bytes.count + values.count * 3)
        for value in values {
            PayloadWriter.appendInt(value, to: &bytes)
            ends.append(bytes.count)
        }
    }

    /// Adds an input that is already encoded in this builder's codec (the CLI's JSON lines).
    mutating func appendEncoded(_ payload: [UInt8]) throws(ProcessPoolError) {
        let limit = WireProtocol.maximumPayloadSize(inFramesOf: maximumFrameSize)
        guard payload.count <= limit else {
            throw ProcessPoolError(.encodingFailed, "the input is \(payload.count) bytes; frames of at most \(maximumFrameSize) bytes carry inputs of up to \(limit) bytes")
        }
        bytes.append(contentsOf: payload)
        ends.append(bytes.count)
    }

    /// Makes `buffer[start...]`, already encoded in this builder's codec, the only payload,
    /// without copying it (a `pool run --pipe` block, read into place after room for the
    /// rest of its input's encoding).
    mutating func adopt(_ buffer: [UInt8], from start: Int) throws(ProcessPoolError) {
        precondition(ends.isEmpty && (0...buffer.count).contains(start), "one payload, adopted by an empty builder")
        let size = buffer.count - start
        let limit = WireProtocol.maximumPayloadSize(inFramesOf: maximumFrameSize)
        guard size <= limit else {
            throw ProcessPoolError(.encodingFailed, "the input is \(size) bytes; frames of at most \(maximumFrameSize) bytes carry inputs of up to \(limit) bytes")
        }
        bytes = buffer
        self.start = start
        ends = [size]
    }

    func build(sink: any ResultSink, jobName: String, firstIndex: Int, firstJobID: UInt64, options: ResolvedJobOptions) -> JobChunk {
        JobChunk(
            sink: sink, jobName: jobName, codec: codec, firstIndex: firstIndex, firstJobID: firstJobID, options: options, bytes: bytes,
            start: start, ends: ends)
    }
}

/// The scheduler's queue of slices; work rescued from a dead worker goes back at its front.
typealias SliceQueue = FIFOQueue<ChunkSlice>
