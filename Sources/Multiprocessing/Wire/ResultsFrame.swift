// The results frame: worker → coordinator, the outcomes of consecutive jobs of one batch.

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

/// A successful result whose output is encoded straight into the results frame, behind room
/// for the longest length the frame could need, rather than into a buffer of its own and
/// copied: for a large output that copy costs as much as sending it.
extension WireWriter {
    /// Writes the start of a successful result in `codec` and room for its output's length; the
    /// caller then appends the output and calls ``endSucceededResult(outputLength:lengthAt:)``.
    ///
    /// - Returns: Where the result starts, and where its length field starts.
    mutating func beginSucceededResult(codec: UInt8) -> (resultStart: Int, lengthAt: Int) {
        let resultStart = bytes.count
        // Status, codec, and the room for the length, in one append.
        let start: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) = (ResultStatus.succeeded.rawValue, codec, 0, 0, 0, 0, 0)
        assert(InPlaceOutputLength.room == 5)
        withUnsafeBytes(of: start) { bytes.append(contentsOf: $0) }
        return (resultStart, resultStart + 2)
    }

    /// The length of the output appended since ``beginSucceededResult(codec:)``.
    func succeededOutputLength(lengthAt: Int) -> Int {
        bytes.count - lengthAt - InPlaceOutputLength.room
    }

    /// Fills in the output's length, and moves a short output up to meet it.
    mutating func endSucceededResult(outputLength length: Int, lengthAt: Int) {
        let unused = bytes.withUnsafeMutableBufferPointer { buffer in
            InPlaceOutputLength.write(length, at: buffer.baseAddress! + lengthAt)
        }
        // One at a time: removeLast(_:) goes through replaceSubrange, dearer for 1–4 bytes.
        for _ in 0..<unused { bytes.removeLast() }
    }

    /// Replaces the result that starts at `resultStart` (the end of what the writer holds) with
    /// `outcome`: a result begun as a success whose job failed, or whose output is too long.
    mutating func replaceResult(startingAt resultStart: Int, with outcome: WireOutcome) {
        bytes.removeSubrange(resultStart...)
        outcome.write(to: &self)
    }
}

/// The length field of an output encoded in place, in a results frame.
enum InPlaceOutputLength {
    /// Room for a payload length: five varint bytes hold 35 bits, more than a frame's 32.
    static let room = 5
    /// Outputs from this size up keep their place, behind a length padded to five bytes;
    /// smaller ones move up to meet the shortest form of their length.
    static let paddedThreshold = 64 << 10

    /// Writes `length` into the room at `destination`, followed by its payload, and returns how
    /// many bytes at the end are no longer used.
    static func write(_ length: Int, at destination: UnsafeMutablePointer<UInt8>) -> Int {
        if length >= paddedThreshold {
            // A varint with continuation bits on its leading groups: valid, if not the shortest.
            var remaining = UInt64(length)
            for index in 0..<(room - 1) {
                destination[index] = UInt8(truncatingIfNeeded: remaining) | 0x80
                remaining &>>= 7
            }
            destination[room - 1] = UInt8(truncatingIfNeeded: remaining)
            return 0
        }
        let written = Varint.write(UInt64(length), to: destination)
        let unused = room - written
        if unused > 0 {
            UnsafeMutableRawPointer(destination + written).copyMemory(from: destination + room, byteCount: length)
        }
        return unused
    }
}

/// Writing a results frame whose header is known only at its end, when its results are
/// written: the frame starts with room for the header, and the header is written right-aligned
/// into that room, with the frame's length and type moved up to meet it, so the results
/// themselves (megabytes, perhaps) stay put.
extension WireWriter {
    /// Room left after a results frame's type byte for its header: four varints of at most
    /// 10 bytes.
    static let resultsHeaderRoom = 40

    /// Starts a results frame, leaving room for its header; pass the result to
    /// ``endResultsFrame(startingAt:header:maximumFrameSize:)``.
    mutating func beginResultsFrame() -> Int {
        let start = beginFrame(.results)
        bytes.append(contentsOf: repeatElement(0, count: Self.resultsHeaderRoom))
        return start
    }

    /// Writes `header` into the room before the results and completes the frame.
    ///
    /// - Returns: Where the frame starts now. The bytes from `start` up to there belong to no
    ///   frame: the caller removes them, or skips them when sending.
    /// - Throws: `WireError` if the frame exceeds `maximumFrameSize`; the frame is then removed.
    mutating func endResultsFrame(startingAt start: Int, header: ResultsHeader, maximumFrameSize: Int) throws(WireError) -> Int {
        var headerBytes = WireWriter(reservingCapacity: Self.resultsHeaderRoom)
        header.write(to: &headerBytes)
        let frameStart = start + Self.resultsHeaderRoom - headerBytes.bytes.count
        let headerStart = frameStart + WireProtocol.frameHeaderSize
        bytes.replaceSubrange(headerStart..<(headerStart + headerBytes.bytes.count), with: headerBytes.bytes)
        bytes[frameStart + 4] = FrameType.results.rawValue
        try endFrame(startingAt: frameStart, maximumFrameSize: maximumFrameSize)
        return frameStart
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
