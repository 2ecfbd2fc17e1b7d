/// Consecutive jobs of one type in a batch, handed to that job's entry point one at a time:
/// the worker loop's side of ``_JobEntryPoint``. An implementation detail of the library.
///
/// The entry point asks for each input with `nextInput()` and reports how the job ended with
/// `finish(_:)`; the run writes each result into the results frame. It stops handing out jobs
/// at the end of the run's jobs, at `limit` jobs, or once the frame has grown past its limit,
/// and keeps the first job it did not hand out for the worker loop.
public struct _JobRun {
    /// The batch's jobs, read as they are handed out.
    var jobs: JobsFrameReader
    /// The results frame being written.
    var writer: WireWriter
    /// The next job to hand out, if it is of this run's type; or the next job of the batch,
    /// left for the worker loop.
    private(set) var next: WireJob?
    /// Whether `next` is a job this run may hand out.
    private var nextIsOurs: Bool
    /// Jobs finished (handed out and answered, or answered at once for an unknown codec).
    private(set) var finished = 0
    /// Where the last result started in `writer`, for moving it to the next frame.
    private(set) var lastResultStart = 0
    /// A malformed jobs frame: the run stops, and the worker loop reports it.
    private(set) var error: WireError?

    private let jobIndex: Int
    private let limit: Int
    private let frameStart: Int
    private let frameLimit: Int
    private let maximumFrameSize: Int
    /// Where each job's position in the batch goes as it starts, for output frames to name it.
    private let runningPosition: UnsafeMutablePointer<Int>
    private let firstPosition: Int
    private var started: (codec: PayloadCodec, resultStart: Int, lengthAt: Int)?

    init(
        first: WireJob, jobs: JobsFrameReader, writer: consuming WireWriter, position: Int, limit: Int,
        frameStart: Int, frameLimit: Int, maximumFrameSize: Int, runningPosition: UnsafeMutablePointer<Int>
    ) {
        self.jobs = jobs
        self.writer = writer
        next = first
        nextIsOurs = true
        jobIndex = first.jobIndex
        firstPosition = position
        self.limit = limit
        self.frameStart = frameStart
        self.frameLimit = frameLimit
        self.maximumFrameSize = maximumFrameSize
        self.runningPosition = runningPosition
    }

    /// The next job's codec and input, with its result begun in the frame; nil when the run
    /// is over.
    @usableFromInline
    mutating func nextInput() -> (codec: PayloadCodec, payload: UnsafeRawBufferPointer)? {
        while error == nil, finished < limit, nextIsOurs, let job = next {
            // A frame past its limit ends the run; the worker loop moves the last result on.
            if finished > 0 && writer.bytes.count - frameStart > frameLimit { return nil }
            runningPosition.pointee = firstPosition + finished
            lastResultStart = writer.bytes.count
            if let begun = ResultWriting.begin(codec: job.codec, into: &writer) {
                started = begun
                return (begun.codec, job.payload)
            }
            // An unknown codec: its failure is written; on to the next job.
            finished += 1
            readNext()
        }
        return nil
    }

    /// Appends the encoding of the current job's output to its result. Inlined into the
    /// job's specialised entry point, so an `Int` output takes a direct call.
    @inlinable
    mutating func appendOutput<Output: Encodable>(_ output: Output, codec: PayloadCodec) throws {
        if Output.self == Int.self && codec == .binary {
            appendBinaryInt(unsafeBitCast(output, to: Int.self))
        } else {
            try appendEncoded(output, codec: codec)
        }
    }

    @usableFromInline
    mutating func appendEncoded<Output: Encodable>(_ output: Output, codec: PayloadCodec) throws {
        try PayloadCoding.encode(output, codec: codec, into: &writer.bytes)
    }

    /// An `Int` in the binary codec, as `BinaryPayloadEncoder` writes it.
    @usableFromInline
    mutating func appendBinaryInt(_ value: Int) {
        PayloadWriter.appendInt(value, to: &writer.bytes)
    }

    /// Completes the current job's result.
    @usableFromInline
    mutating func finish(_ status: _JobRunStatus) {
        guard let begun = started else { preconditionFailure("finish(_:) without a job") }
        started = nil
        ResultWriting.finish(status, resultStart: begun.resultStart, lengthAt: begun.lengthAt, maximumFrameSize: maximumFrameSize, into: &writer)
        finished += 1
        readNext()
    }

    private mutating func readNext() {
        do {
            next = try jobs.next()
            nextIsOurs = next?.jobIndex == jobIndex
        } catch {
            self.error = error
            next = nil
        }
    }
}
