/// Writes a job's result into a results frame around the call to its entry point, which
/// the worker loop makes itself: one asynchronous call per job, into code specialised for the
/// job's types.
///
/// The output is encoded straight into the results frame, behind room for the longest length
/// the frame could need, rather than into a buffer of its own and copied: for a large output
/// that copy costs as much as sending it.
enum ResultWriting {
    /// Writes the start of a successful result and room for its length; returns where the
    /// result and its length start, or nil (after writing a failed result) for an unknown codec.
    static func begin(codec rawCodec: UInt8, into writer: inout WireWriter) -> (codec: PayloadCodec, resultStart: Int, lengthAt: Int)? {
        guard let codec = PayloadCodec(rawValue: rawCodec) else {
            WireOutcome.inputDecodingFailed("unknown payload codec \(rawCodec)").write(to: &writer)
            return nil
        }
        let resultStart = writer.bytes.count
        // Status, codec, and the room for the length, in one append.
        let start: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) = (ResultStatus.succeeded.rawValue, rawCodec, 0, 0, 0, 0, 0)
        assert(InPlaceOutputLength.room == 5)
        withUnsafeBytes(of: start) { writer.bytes.append(contentsOf: $0) }
        return (codec, resultStart, resultStart + 2)
    }

    /// Completes the result `begin` started: fills in the output's length, or replaces the
    /// result with the failure.
    static func finish(_ status: _JobRunStatus, resultStart: Int, lengthAt: Int, maximumFrameSize: Int, into writer: inout WireWriter) {
        let failure: WireOutcome
        switch status {
        case .succeeded:
            let length = writer.bytes.count - lengthAt - InPlaceOutputLength.room
            // Leave room for the frame and result headers within the frame limit.
            let limit = WireProtocol.maximumPayloadSize(inFramesOf: maximumFrameSize)
            guard length > limit else {
                let unused = writer.bytes.withUnsafeMutableBufferPointer { buffer in
                    InPlaceOutputLength.write(length, at: buffer.baseAddress! + lengthAt)
                }
                // One at a time: removeLast(_:) goes through replaceSubrange, dearer for 1–4 bytes.
                for _ in 0..<unused { writer.bytes.removeLast() }
                return
            }
            failure = .outputEncodingFailed("the output is \(length) bytes; frames of at most \(maximumFrameSize) bytes carry outputs of up to \(limit) bytes")
        case .threw(let typeName, let description):
            failure = .threw(typeName: typeName, description: description)
        case .inputDecodingFailed(let description):
            failure = .inputDecodingFailed(description)
        case .outputEncodingFailed(let description):
            failure = .outputEncodingFailed(description)
        }
        writer.bytes.removeSubrange(resultStart...)
        failure.write(to: &writer)
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

/// The jobs a worker serves, in the order announced in its hello (the wire refers to them by
/// that position).
struct JobRegistry {
    /// Each job's entry point, compiled in the module that declares the job.
    let handlers: [_JobEntryPoint]

    init(_ jobs: [any Job.Type]) throws(ProcessPoolError) {
        var seen: Set<String> = []
        var handlers: [_JobEntryPoint] = []
        for job in jobs {
            let handler = job._workerEntryPoint()
            guard seen.insert(handler.name).inserted else {
                throw ProcessPoolError(.unknownJob, "two registered jobs share the name \"\(handler.name)\"; give one a distinct `static let name`")
            }
            handlers.append(handler)
        }
        self.handlers = handlers
    }

    var names: [String] { handlers.map(\.name) }
}
