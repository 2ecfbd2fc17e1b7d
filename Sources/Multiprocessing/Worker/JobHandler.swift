/// Runs jobs of one registered type inside a worker: decodes the input, calls `run`, encodes the
/// output. Subclassed per job type so the worker loop stays free of generics.
class AnyJobHandler {
    let name: String

    init(name: String) { self.name = name }

    /// Runs one job and appends its outcome to `writer` in results-frame form.
    nonisolated(nonsending) func perform(codec: UInt8, payload: UnsafeRawBufferPointer, maximumFrameSize: Int, into writer: inout WireWriter) async {
        fatalError("abstract")
    }
}

final class JobHandler<J: Job>: AnyJobHandler {
    /// Created on first use and kept for the life of the worker process.
    private var instance: J?

    init() { super.init(name: J.name) }

    override nonisolated(nonsending) func perform(codec rawCodec: UInt8, payload: UnsafeRawBufferPointer, maximumFrameSize: Int, into writer: inout WireWriter) async {
        guard let codec = PayloadCodec(rawValue: rawCodec) else {
            WireOutcome.inputDecodingFailed("unknown payload codec \(rawCodec)").write(to: &writer)
            return
        }
        let input: J.Input
        do {
            input = try PayloadCoding.decode(J.Input.self, codec: codec, from: payload)
        } catch {
            WireOutcome.inputDecodingFailed("cannot decode \(J.Input.self): " + PayloadCoding.describe(error)).write(to: &writer)
            return
        }
        let job: J
        if let instance {
            job = instance
        } else {
            job = J()
            instance = job
        }
        let output: J.Output
        do {
            output = try await job.run(input)
        } catch {
            WireOutcome.threw(typeName: String(reflecting: type(of: error)), description: String(describing: error)).write(to: &writer)
            return
        }
        // Encode straight into the results frame, behind room for the longest length this
        // frame could need, rather than into a buffer of its own and copy: for a large output
        // that copy costs as much as sending it.
        let resultStart = writer.bytes.count
        writer.writeByte(ResultStatus.succeeded.rawValue)
        writer.writeByte(rawCodec)
        let lengthAt = writer.bytes.count
        writer.bytes.append(contentsOf: repeatElement(0, count: InPlaceOutputLength.room))
        do {
            try PayloadCoding.encode(output, codec: codec, into: &writer.bytes)
        } catch {
            writer.bytes.removeSubrange(resultStart...)
            WireOutcome.outputEncodingFailed("cannot encode \(J.Output.self): " + PayloadCoding.describe(error)).write(to: &writer)
            return
        }
        let length = writer.bytes.count - lengthAt - InPlaceOutputLength.room
        // Leave room for the frame and result headers within the frame limit.
        let limit = WireProtocol.maximumPayloadSize(inFramesOf: maximumFrameSize)
        guard length <= limit else {
            writer.bytes.removeSubrange(resultStart...)
            WireOutcome.outputEncodingFailed("the output is \(length) bytes; frames of at most \(maximumFrameSize) bytes carry outputs of up to \(limit) bytes").write(to: &writer)
            return
        }
        let unused = writer.bytes.withUnsafeMutableBufferPointer { buffer in
            InPlaceOutputLength.write(length, at: buffer.baseAddress! + lengthAt)
        }
        if unused > 0 { writer.bytes.removeLast(unused) }
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
    let handlers: [AnyJobHandler]

    init(_ jobs: [any Job.Type]) throws(ProcessPoolError) {
        var seen: Set<String> = []
        var handlers: [AnyJobHandler] = []
        for job in jobs {
            let handler = Self.makeHandler(job)
            guard seen.insert(handler.name).inserted else {
                throw ProcessPoolError(.unknownJob, "two registered jobs share the name \"\(handler.name)\"; give one a distinct `static let name`")
            }
            handlers.append(handler)
        }
        self.handlers = handlers
    }

    private static func makeHandler<J: Job>(_ job: J.Type) -> AnyJobHandler { JobHandler<J>() }

    var names: [String] { handlers.map(\.name) }
}
