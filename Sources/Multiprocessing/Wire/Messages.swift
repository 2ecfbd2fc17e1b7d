/// Frame construction: each frame is written in place into an outgoing buffer, and its length
/// is patched in at the end, so a batch of many jobs costs one pass over its bytes.
extension WireWriter {
    /// Starts a frame of `type`; pass the result to `endFrame`.
    mutating func beginFrame(_ type: FrameType) -> Int {
        let start = bytes.count
        writeUInt32(0)
        writeByte(type.rawValue)
        return start
    }

    /// Patches the frame's length.
    /// - Throws: `WireError` if the frame exceeds `maximumFrameSize`; the frame is then removed.
    mutating func endFrame(startingAt start: Int, maximumFrameSize: Int) throws(WireError) {
        let length = bytes.count - start - 4
        guard length <= maximumFrameSize else {
            bytes.removeSubrange(start...)
            throw WireError("frame of \(length) bytes exceeds the maximum frame size of \(maximumFrameSize) bytes")
        }
        let value = UInt32(length)
        for index in 0..<4 { bytes[start + index] = UInt8(truncatingIfNeeded: value >> (8 * index)) }
    }

    mutating func writePreamble() { bytes.append(contentsOf: WireProtocol.preamble) }
}

/// The worker's first frame.
struct WorkerHello: Equatable {
    var processID: Int
    var jobNames: [String]

    func write(to writer: inout WireWriter) {
        let start = writer.beginFrame(.workerHello)
        writer.writeVarint(processID)
        writer.writeVarint(jobNames.count)
        for name in jobNames { writer.writeString(name) }
        try! writer.endFrame(startingAt: start, maximumFrameSize: WireProtocol.absoluteMaximumFrameSize)
    }

    init(processID: Int, jobNames: [String]) {
        self.processID = processID
        self.jobNames = jobNames
    }

    init(body: UnsafeRawBufferPointer) throws(WireError) {
        var reader = WireReader(body)
        processID = try reader.readCount("worker pid", limit: Int(Int32.max))
        let count = try reader.readCount("job name count", limit: reader.remaining)
        jobNames = []
        for index in 0..<count { jobNames.append(try reader.readString("job name \(index)")) }
        try reader.expectEnd("the worker hello")
    }
}

/// The coordinator's first frame.
struct CoordinatorHello: Equatable {
    var maximumFrameSize: Int

    func write(to writer: inout WireWriter) {
        let start = writer.beginFrame(.coordinatorHello)
        writer.writeVarint(maximumFrameSize)
        try! writer.endFrame(startingAt: start, maximumFrameSize: WireProtocol.absoluteMaximumFrameSize)
    }

    init(maximumFrameSize: Int) { self.maximumFrameSize = maximumFrameSize }

    init(body: UnsafeRawBufferPointer) throws(WireError) {
        var reader = WireReader(body)
        maximumFrameSize = try reader.readCount("maximum frame size", limit: WireProtocol.absoluteMaximumFrameSize)
        try reader.expectEnd("the coordinator hello")
    }
}

/// Output a running job streams: bytes for one of its standard streams (1 stdout, 2
/// stderr), tagged with the batch and position of the job, so the coordinator can check that
/// it comes from the job the worker is running.
struct OutputFrameHeader: Equatable {
    var batchID: UInt64
    var position: Int
    var stream: UInt8

    static func write(batchID: UInt64, position: Int, stream: UInt8, bytes: UnsafeRawBufferPointer, to writer: inout WireWriter, maximumFrameSize: Int) throws(WireError) {
        let start = writer.beginFrame(.output)
        writer.writeVarint(batchID)
        writer.writeVarint(position)
        writer.writeByte(stream)
        writer.bytes.append(contentsOf: bytes)
        try writer.endFrame(startingAt: start, maximumFrameSize: maximumFrameSize)
    }

    /// Reads the header; the rest of `body` (from the returned offset) is the output.
    static func read(body: UnsafeRawBufferPointer) throws(WireError) -> (OutputFrameHeader, bytes: UnsafeRawBufferPointer) {
        var reader = WireReader(body)
        let batchID = try reader.readVarint("batch id")
        let position = try reader.readCount("job position", limit: Int(UInt32.max))
        let stream = try reader.readByte("stream")
        guard stream == 1 || stream == 2 else { throw WireError("output for stream \(stream); only 1 (stdout) and 2 (stderr) exist") }
        let bytes = UnsafeRawBufferPointer(rebasing: body[reader.offset...])
        return (OutputFrameHeader(batchID: batchID, position: position, stream: stream), bytes)
    }
}

/// One job as it travels in a jobs frame.
struct WireJob {
    var jobIndex: Int
    var codec: UInt8
    var payload: UnsafeRawBufferPointer
}

/// Options of a batch, in a jobs frame's flags byte.
struct BatchFlags: OptionSet, Sendable {
    let rawValue: UInt8
    /// Send each job's result as soon as the job ends, rather than batching results. The
    /// coordinator asks for it when it must know exactly which job is running: jobs with a
    /// timeout, and jobs retried after a crash that could not be pinned on one of them.
    static let reportEachResult = BatchFlags(rawValue: 1)
}

/// Reads a jobs frame: batch id, flags, count, then each job's index, codec and payload.
struct JobsFrameReader {
    let batchID: UInt64
    let flags: BatchFlags
    let count: Int
    private var reader: WireReader
    private var readCount = 0

    init(body: UnsafeRawBufferPointer) throws(WireError) {
        reader = WireReader(body)
        batchID = try reader.readVarint("batch id")
        let rawFlags = try reader.readByte("batch flags")
        guard rawFlags & ~BatchFlags.reportEachResult.rawValue == 0 else {
            throw WireError("unknown batch flags \(rawFlags)")
        }
        flags = BatchFlags(rawValue: rawFlags)
        // Each job takes at least 3 bytes, so a count above that bound is a lie.
        count = try reader.readCount("job count", limit: reader.remaining / 3)
    }

    mutating func next() throws(WireError) -> WireJob? {
        guard readCount < count else {
            try reader.expectEnd("the jobs frame's \(count) jobs")
            return nil
        }
        let position = readCount
        readCount += 1
        let jobIndex = try reader.readCount("job index of job \(position)", limit: Int(UInt32.max))
        let codec = try reader.readByte("codec of job \(position)")
        let payload = try reader.readBlock("payload of job \(position)")
        return WireJob(jobIndex: jobIndex, codec: codec, payload: payload)
    }
}

/// Writes a jobs frame: `begin`, then `append` each job, then `end`.
struct JobsFrameWriter {
    private let frameStart: Int

    init(batchID: UInt64, flags: BatchFlags = [], count: Int, into writer: inout WireWriter) {
        frameStart = writer.beginFrame(.jobs)
        writer.writeVarint(batchID)
        writer.writeByte(flags.rawValue)
        writer.writeVarint(count)
    }

    func append(jobIndex: Int, codec: UInt8, payload: UnsafeRawBufferPointer, into writer: inout WireWriter) {
        writer.writeVarint(jobIndex)
        writer.writeByte(codec)
        writer.writeBlock(payload)
    }

    /// Writes a job's header and its payload's length, but not the payload: the caller sends
    /// those `payloadSize` bytes itself, right after what `writer` holds now.
    func appendHeader(jobIndex: Int, codec: UInt8, payloadSize: Int, into writer: inout WireWriter) {
        writer.writeVarint(jobIndex)
        writer.writeByte(codec)
        writer.writeVarint(payloadSize)
    }

    /// Where the frame begins in the writer.
    var start: Int { frameStart }

    /// Patches the frame's length; `externalBytes` counts payload bytes sent from elsewhere.
    func end(into writer: inout WireWriter, externalBytes: Int = 0, maximumFrameSize: Int) throws(WireError) {
        let length = writer.bytes.count - frameStart - 4 + externalBytes
        guard length <= maximumFrameSize else {
            writer.bytes.removeSubrange(frameStart...)
            throw WireError("frame of \(length) bytes exceeds the maximum frame size of \(maximumFrameSize) bytes")
        }
        let value = UInt32(length)
        for index in 0..<4 { writer.bytes[frameStart + index] = UInt8(truncatingIfNeeded: value >> (8 * index)) }
    }
}

/// One job's outcome as carried in a results frame.
enum WireOutcome {
    case succeeded(codec: UInt8, payload: UnsafeRawBufferPointer)
    case threw(typeName: String, description: String)
    case inputDecodingFailed(String)
    case outputEncodingFailed(String)
    case unknownJob(index: Int)

    func write(to writer: inout WireWriter) {
        switch self {
        case .succeeded(let codec, let payload):
            writer.writeByte(ResultStatus.succeeded.rawValue)
            writer.writeByte(codec)
            writer.writeBlock(payload)
        case .threw(let typeName, let description):
            writer.writeByte(ResultStatus.threw.rawValue)
            writer.writeString(typeName)
            writer.writeString(description)
        case .inputDecodingFailed(let description):
            writer.writeByte(ResultStatus.inputDecodingFailed.rawValue)
            writer.writeString(description)
        case .outputEncodingFailed(let description):
            writer.writeByte(ResultStatus.outputEncodingFailed.rawValue)
            writer.writeString(description)
        case .unknownJob(let index):
            writer.writeByte(ResultStatus.unknownJob.rawValue)
            writer.writeVarint(index)
        }
    }
}

/// The header of a results frame: which batch, the position of its first result in that batch,
/// how many results follow, and how long the worker spent on them.
struct ResultsHeader: Equatable {
    var batchID: UInt64
    var firstPosition: Int
    var count: Int
    var elapsedNanoseconds: UInt64

    func write(to writer: inout WireWriter) {
        writer.writeVarint(batchID)
        writer.writeVarint(firstPosition)
        writer.writeVarint(count)
        writer.writeVarint(elapsedNanoseconds)
    }
}

/// Reads a results frame.
struct ResultsFrameReader {
    let header: ResultsHeader
    private var reader: WireReader
    private var readCount = 0

    init(body: UnsafeRawBufferPointer) throws(WireError) {
        reader = WireReader(body)
        let batchID = try reader.readVarint("batch id")
        let firstPosition = try reader.readCount("first result position", limit: Int(UInt32.max))
        // Each result takes at least 2 bytes.
        let count = try reader.readCount("result count", limit: reader.remaining / 2)
        let elapsed = try reader.readVarint("elapsed time")
        header = ResultsHeader(batchID: batchID, firstPosition: firstPosition, count: count, elapsedNanoseconds: elapsed)
    }

    /// The frame's results, not yet read: all of them, before the first `next()`.
    var remainingBytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: reader.bytes[reader.offset...]) }

    mutating func next() throws(WireError) -> WireOutcome? {
        guard readCount < header.count else {
            try reader.expectEnd("the results frame's \(header.count) results")
            return nil
        }
        let position = header.firstPosition + readCount
        readCount += 1
        let rawStatus = try reader.readByte("status of result \(position)")
        guard let status = ResultStatus(rawValue: rawStatus) else {
            throw WireError("unknown result status \(rawStatus) for result \(position)")
        }
        switch status {
        case .succeeded:
            let codec = try reader.readByte("codec of result \(position)")
            return .succeeded(codec: codec, payload: try reader.readBlock("payload of result \(position)"))
        case .threw:
            let typeName = try reader.readString("error type of result \(position)")
            return .threw(typeName: typeName, description: try reader.readString("error description of result \(position)"))
        case .inputDecodingFailed:
            return .inputDecodingFailed(try reader.readString("decoding error of result \(position)"))
        case .outputEncodingFailed:
            return .outputEncodingFailed(try reader.readString("encoding error of result \(position)"))
        case .unknownJob:
            return .unknownJob(index: try reader.readCount("job index of result \(position)", limit: Int(UInt32.max)))
        }
    }
}

/// The body of a fatal frame: one UTF-8 message.
func fatalMessage(from body: UnsafeRawBufferPointer) -> String {
    String(decoding: body, as: UTF8.self)
}
