// The jobs frame: coordinator → worker, a batch of jobs.

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

    /// Appends jobs from the start of `positions`, as the frame lists them (job index, codec,
    /// payload length, payload), in one pass with no call per job, stopping before the first
    /// payload of `largeThreshold` bytes or more (the caller sends those from where they are
    /// stored, with ``appendHeader(jobIndex:codec:payloadSize:into:)``).
    ///
    /// - Parameters:
    ///   - positions: The payloads to append, by their position in `payloads`.
    ///   - payloads: Payloads stored back to back.
    ///   - ends: `ends[k]` is the offset in `payloads` just past payload `k`.
    ///   - jobIndex: The job every payload is an input of.
    ///   - codec: The codec of every payload.
    ///   - largeThreshold: The payload size from which appending stops.
    ///   - writer: The writer that holds this frame.
    /// - Returns: The position it stopped at: `positions.upperBound` if it appended them all.
    func appendJobs(
        _ positions: Range<Int>, of payloads: UnsafeRawBufferPointer, ends: [Int], jobIndex: Int, codec: UInt8,
        largeThreshold: Int, into writer: inout WireWriter
    ) -> Int {
        let indexLength = Varint.encodedLength(of: UInt64(jobIndex))
        let firstStart = positions.lowerBound == 0 ? 0 : ends[positions.lowerBound - 1]
        // First pass: how many jobs fit, and the bytes they take, so the buffer grows once.
        var total = 0
        var previous = firstStart
        var stop = positions.upperBound
        for position in positions {
            let size = ends[position] - previous
            if size >= largeThreshold {
                stop = position
                break
            }
            total += indexLength + 1 + Varint.encodedLength(of: UInt64(size)) + size
            previous = ends[position]
        }
        guard stop > positions.lowerBound else { return stop }
        let start = writer.bytes.count
        writer.bytes.append(contentsOf: repeatElement(0, count: total))
        writer.bytes.withUnsafeMutableBufferPointer { output in
            let out = output.baseAddress!
            var cursor = start
            var previous = firstStart
            for position in positions.lowerBound..<stop {
                let end = ends[position]
                let size = end - previous
                cursor += Varint.write(UInt64(jobIndex), to: out + cursor)
                out[cursor] = codec
                cursor += 1
                cursor += Varint.write(UInt64(size), to: out + cursor)
                if size > 0 {
                    UnsafeMutableRawPointer(out + cursor).copyMemory(from: payloads.baseAddress! + previous, byteCount: size)
                }
                cursor += size
                previous = end
            }
            assert(cursor == start + total)
        }
        return stop
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
    /// - Throws: `WireError` if the frame exceeds `maximumFrameSize`; the frame is then removed.
    func end(into writer: inout WireWriter, externalBytes: Int = 0, maximumFrameSize: Int) throws(WireError) {
        try writer.endFrame(startingAt: frameStart, externalBytes: externalBytes, maximumFrameSize: maximumFrameSize)
    }
}
