// Fuzz target for the frame layer: FrameReader (preamble, framing, reassembly across pieces)
// and the message parsers of each frame type (WorkerHello, CoordinatorHello, JobsFrameReader,
// ResultsFrameReader, fatal). Binary payloads carried by jobs/results frames are decoded too.
//
// Compiled together with Sources/Multiprocessing/Wire/*.swift and PayloadCoding/*.swift (the
// types are internal), with PayloadFuzzer.swift and FuzzSeeds.swift. Define FUZZ_FRAME_ENTRY
// to get the libFuzzer entry point; MutationDriver.swift calls `fuzzFrames` directly.

/// The largest frame the fuzzed readers accept. Small, so a corrupt length cannot make the
/// reader reserve more than ~128 KiB.
let fuzzMaximumFrameSize = 64 * 1024

/// Runs one input through the frame decode path; returns how many errors were thrown (errors
/// are expected and fine; only crashes, hangs and huge allocations are bugs).
///
/// Layout: byte 0 and byte 1 choose the split points; the rest is the stream.
@discardableResult
func fuzzFrames(_ input: UnsafeRawBufferPointer) -> Int {
    guard input.count >= 2 else { return 0 }
    let stream = Array(input[2...])
    let split1 = stream.isEmpty ? 0 : Int(input[0]) % (stream.count + 1)
    let split2 = stream.isEmpty ? 0 : split1 + Int(input[1]) % (stream.count - split1 + 1)
    var errors = 0

    // 1. No preamble expected, the whole stream appended at once.
    errors += feed([stream[...]], expectsPreamble: false, maximumFrameSize: fuzzMaximumFrameSize, useReadIntoStorage: false)
    // 2. A valid preamble, then the stream, in three pieces read through `readIntoStorage`
    //    (the production path), so frames are reassembled across arbitrary boundaries.
    let withPreamble = WireProtocol.preamble + stream
    let p1 = min(split1 + 8, withPreamble.count)
    let p2 = min(max(split2 + 8, p1), withPreamble.count)
    errors += feed(
        [withPreamble[0..<p1], withPreamble[p1..<p2], withPreamble[p2...]],
        expectsPreamble: true, maximumFrameSize: fuzzMaximumFrameSize, useReadIntoStorage: true)
    // 3. The raw stream where a preamble is expected (bad/partial preamble handling), in two
    //    pieces, with a tiny frame limit taken from byte 1 to exercise the size check.
    errors += feed(
        [stream[0..<split1], stream[split1...]],
        expectsPreamble: true, maximumFrameSize: 1 + Int(input[1]), useReadIntoStorage: false)
    return errors
}

/// Feeds `pieces` one after the other into a fresh reader, draining every complete frame after
/// each piece, as the event loops do. Stops at the first framing error (the connection would be
/// closed); errors of a frame's body are counted and reading goes on.
private func feed(
    _ pieces: [ArraySlice<UInt8>], expectsPreamble: Bool, maximumFrameSize: Int, useReadIntoStorage: Bool
) -> Int {
    var reader = FrameReader(maximumFrameSize: maximumFrameSize, expectsPreamble: expectsPreamble)
    var errors = 0
    var framesSeen = 0
    for piece in pieces {
        if useReadIntoStorage {
            var offset = piece.startIndex
            while offset < piece.endIndex {
                reader.readIntoStorage(minimum: 4096) { buffer in
                    let count = min(buffer.count, piece.endIndex - offset)
                    piece.withUnsafeBytes { source in
                        let start = offset - piece.startIndex
                        buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[start..<start + count]))
                    }
                    offset += count
                    return count
                }
            }
        } else {
            reader.append(piece)
        }
        do {
            while let frameErrors = try reader.nextFrame({ type, body in parseFrame(type: type, body: body) }) {
                errors += frameErrors
                framesSeen += 1
                // A frame is at least 5 bytes of input, so this can never trigger legitimately.
                precondition(framesSeen <= 1 + pieces.reduce(0) { $0 + $1.count }, "FrameReader yields frames from nothing")
            }
        } catch {
            return errors + 1
        }
    }
    return errors
}

/// Parses a frame body with the parser of its type, iterating every entry; returns the number of
/// errors thrown.
func parseFrame(type: UInt8, body: UnsafeRawBufferPointer) -> Int {
    var errors = 0
    do {
        switch FrameType(rawValue: type) {
        case .workerHello:
            let hello = try WorkerHello(body: body)
            sink(hello.processID &+ hello.jobNames.count)
        case .coordinatorHello:
            let hello = try CoordinatorHello(body: body)
            sink(hello.maximumFrameSize)
        case .jobs:
            var jobs = try JobsFrameReader(body: body)
            var seen = 0
            while let job = try jobs.next() {
                seen += 1
                precondition(seen <= jobs.count, "JobsFrameReader returned more jobs than its count")
                sink(job.jobIndex &+ Int(job.codec) &+ checksum(job.payload))
                if job.codec == PayloadCodec.binary.rawValue { errors += decodeEmbeddedPayload(job.payload) }
            }
        case .results:
            var results = try ResultsFrameReader(body: body)
            var seen = 0
            while let outcome = try results.next() {
                seen += 1
                precondition(seen <= results.header.count, "ResultsFrameReader returned more results than its count")
                switch outcome {
                case .succeeded(let codec, let payload):
                    sink(Int(codec) &+ checksum(payload))
                    if codec == PayloadCodec.binary.rawValue { errors += decodeEmbeddedPayload(payload) }
                case .threw(let typeName, let description):
                    sink(typeName.utf8.count &+ description.utf8.count)
                case .inputDecodingFailed(let text), .outputEncodingFailed(let text):
                    sink(text.utf8.count)
                case .unknownJob(let index):
                    sink(index)
                }
            }
        case .output:
            let (header, bytes) = try OutputFrameHeader.read(body: body)
            precondition(header.stream == 1 || header.stream == 2, "output for a stream that does not exist")
            sink(Int(truncatingIfNeeded: header.batchID) &+ header.position &+ checksum(bytes))
        case .fatal:
            sink(fatalMessage(from: body).utf8.count)
        case .shutdown, nil:
            sink(body.count)
        }
    } catch {
        errors += 1
    }
    return errors
}

/// A payload inside a frame, decoded as two of the payload fuzzer's types.
private func decodeEmbeddedPayload(_ payload: UnsafeRawBufferPointer) -> Int {
    var errors = 0
    do { sink(try BinaryPayloadDecoder().decode(FuzzRecord.self, from: payload).id) } catch { errors += 1 }
    do { sink(try BinaryPayloadDecoder().decode([Int].self, from: payload).count) } catch { errors += 1 }
    return errors
}

private func checksum(_ bytes: UnsafeRawBufferPointer) -> Int {
    var sum = 0
    for byte in bytes { sum &+= Int(byte) }
    return sum
}

/// Keeps results alive so the optimizer cannot drop the parsing.
nonisolated(unsafe) var fuzzSink = 0
@inline(never) func sink(_ value: Int) { fuzzSink &+= value }

#if FUZZ_FRAME_ENTRY
@_cdecl("LLVMFuzzerTestOneInput")
public func frameFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    fuzzFrames(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
#endif
