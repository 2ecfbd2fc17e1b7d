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

    /// Patches the length of the frame that `beginFrame` started at `start`: the one place a
    /// frame's length field is written.
    ///
    /// - Parameters:
    ///   - start: Where the frame's length field is in `bytes`.
    ///   - externalBytes: Bytes of the frame's body that the caller sends from elsewhere, right
    ///     after what `bytes` holds now (large payloads sent from where they are stored).
    ///   - maximumFrameSize: The largest length the peer accepts.
    /// - Throws: `WireError` if the frame exceeds `maximumFrameSize`; the frame is then removed.
    mutating func endFrame(startingAt start: Int, externalBytes: Int = 0, maximumFrameSize: Int) throws(WireError) {
        let length = bytes.count - start - 4 + externalBytes
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

/// The body of a fatal frame: one UTF-8 message.
func fatalMessage(from body: UnsafeRawBufferPointer) -> String {
    String(decoding: body, as: UTF8.self)
}
