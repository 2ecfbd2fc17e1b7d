#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import Multiprocessing
@testable import fixture_worker

/// A stream as a worker writes it: preamble, hello, streamed output, two results frames and a
/// fatal frame.
private func sampleWorkerStream() -> (bytes: [UInt8], frameCount: Int) {
    var writer = WireWriter()
    writer.writePreamble()
    WorkerHello(processID: 4242, jobNames: ["square", "count-primes", "ünïcödé"]).write(to: &writer)
    Array("a line\n".utf8).withUnsafeBytes {
        try! OutputFrameHeader.write(batchID: 1, position: 2, stream: 2, bytes: $0, to: &writer, maximumFrameSize: 1 << 20)
    }
    for batch in 0..<2 {
        let start = writer.beginFrame(.results)
        ResultsHeader(batchID: UInt64(batch + 1), firstPosition: 0, count: 3, elapsedNanoseconds: 12_345).write(to: &writer)
        [UInt8](repeating: UInt8(batch), count: 300).withUnsafeBytes { WireOutcome.succeeded(codec: 0, payload: $0).write(to: &writer) }
        WireOutcome.threw(typeName: "Fixture.Error", description: "no").write(to: &writer)
        WireOutcome.inputDecodingFailed("bad input").write(to: &writer)
        try! writer.endFrame(startingAt: start, maximumFrameSize: 1 << 20)
    }
    let fatal = writer.beginFrame(.fatal)
    writer.bytes.append(contentsOf: Array("bye".utf8))
    try! writer.endFrame(startingAt: fatal, maximumFrameSize: 1 << 20)
    return (writer.bytes, 5)
}

/// Decodes every frame in `reader`, returning a readable summary of each.
private func drain(_ reader: inout FrameReader) throws -> [String] {
    var frames: [String] = []
    while let frame = try reader.nextFrame({ type, body -> String in
        switch FrameType(rawValue: type) {
        case .workerHello?:
            let hello = try WorkerHello(body: body)
            return "hello \(hello.processID) \(hello.jobNames)"
        case .results?:
            var results = try ResultsFrameReader(body: body)
            var parts = ["results \(results.header.batchID) \(results.header.count)"]
            while let outcome = try results.next() {
                switch outcome {
                case .succeeded(_, let payload): parts.append("ok \(payload.count) \(payload.first ?? 0)")
                case .threw(let type, let description): parts.append("threw \(type) \(description)")
                case .inputDecodingFailed(let text): parts.append("undecodable \(text)")
                case .outputEncodingFailed(let text): parts.append("unencodable \(text)")
                case .unknownJob(let index): parts.append("unknown \(index)")
                }
            }
            return parts.joined(separator: "; ")
        case .fatal?:
            return "fatal " + fatalMessage(from: body)
        case .output?:
            let (header, bytes) = try OutputFrameHeader.read(body: body)
            return "output \(header.batchID) \(header.position) \(header.stream) \(String(decoding: bytes, as: UTF8.self).debugDescription)"
        default:
            return "type \(type)"
        }
    }) {
        frames.append(frame)
    }
    return frames
}

@Suite("Wire frames")
struct WireTests {
    @Test("every frame decodes the same whichever byte the stream is split at")
    func splitAtEveryBoundary() throws {
        let (bytes, frameCount) = sampleWorkerStream()
        var whole = FrameReader()
        whole.append(bytes)
        let expected = try drain(&whole)
        #expect(expected.count == frameCount)
        #expect(expected[0] == "hello 4242 [\"square\", \"count-primes\", \"ünïcödé\"]")
        #expect(expected[1] == "output 1 2 2 \"a line\\n\"")
        #expect(expected[2] == "results 1 3; ok 300 0; threw Fixture.Error no; undecodable bad input")
        #expect(expected[4] == "fatal bye")

        for split in 0...bytes.count {
            var reader = FrameReader()
            reader.append(bytes[0..<split])
            var frames = try drain(&reader)
            reader.append(bytes[split...])
            frames += try drain(&reader)
            #expect(frames == expected, "split at \(split)")
        }
    }

    @Test("a stream fed one byte at a time yields every frame")
    func byteByByte() throws {
        let (bytes, _) = sampleWorkerStream()
        var whole = FrameReader()
        whole.append(bytes)
        let expected = try drain(&whole)
        var reader = FrameReader()
        var frames: [String] = []
        for byte in bytes {
            reader.append([byte])
            frames += try drain(&reader)
        }
        #expect(frames == expected)
    }

    @Test("a large frame's body can be taken while partial, and the stream goes on after it")
    func partialLargeFrame() throws {
        var writer = WireWriter()
        writer.writePreamble()
        let start = writer.beginFrame(.jobs)
        let body = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        writer.bytes.append(contentsOf: body)
        try writer.endFrame(startingAt: start, maximumFrameSize: 1 << 20)
        let frameEnd = writer.bytes.count
        let fatal = writer.beginFrame(.fatal)
        writer.bytes.append(contentsOf: Array("after".utf8))
        try writer.endFrame(startingAt: fatal, maximumFrameSize: 1 << 20)
        let bytes = writer.bytes

        for split in [WireProtocol.preambleSize + 4, WireProtocol.preambleSize + 5, 70_000, frameEnd - 1] {
            var reader = FrameReader()
            reader.append(bytes[0..<split])
            #expect(try reader.nextFrame { _, _ in 0 } == nil)
            if split < WireProtocol.preambleSize + WireProtocol.frameHeaderSize {
                #expect(reader.partialFrameHeader(minimumLength: 1) == nil)
                continue
            }
            // Too small to be worth it, or unknown yet: nothing to take.
            #expect(reader.partialFrameHeader(minimumLength: body.count + 2) == nil)
            let header = try #require(reader.partialFrameHeader(minimumLength: 1000))
            #expect(header.type == FrameType.jobs.rawValue && header.length == body.count + 1)
            var taken = [UInt8](repeating: 0, count: body.count)
            let count = taken.withUnsafeMutableBytes { reader.takePartialFrameBody(into: $0) }
            #expect(count == split - WireProtocol.preambleSize - WireProtocol.frameHeaderSize)
            // The caller reads the rest itself; the reader then sees only what follows.
            taken.replaceSubrange(count..., with: bytes[(split)..<frameEnd])
            #expect(taken == body)
            reader.append(bytes[frameEnd...])
            #expect(try drain(&reader) == ["fatal after"])
        }
        // A complete frame is no partial one.
        var complete = FrameReader()
        complete.append(bytes)
        _ = try complete.nextFrame { _, _ in 0 }
        #expect(complete.partialFrameHeader(minimumLength: 1) == nil)
    }

    @Test("a truncated stream yields no partial frame and no error")
    func truncatedStreamWaits() throws {
        let (bytes, frameCount) = sampleWorkerStream()
        for length in 0..<bytes.count {
            var reader = FrameReader()
            reader.append(bytes[0..<length])
            let frames = try drain(&reader)
            #expect(frames.count < frameCount)
        }
    }

    @Test("a frame over the maximum size is refused with both sizes named")
    func oversizedFrame() {
        var writer = WireWriter()
        writer.writePreamble()
        writer.writeUInt32(2_000_000)
        writer.writeByte(FrameType.results.rawValue)
        var reader = FrameReader(maximumFrameSize: 1_000_000)
        reader.append(writer.bytes)
        #expect {
            _ = try drain(&reader)
        } throws: { error in
            "\(error)".contains("2000000") && "\(error)".contains("1000000")
        }
    }

    @Test("a header claiming a huge frame does not make the reader allocate it")
    func forgedLengthDoesNotAllocate() throws {
        var reader = FrameReader(maximumFrameSize: 256 << 20, expectsPreamble: false)
        reader.append([0x00, 0x00, 0x00, 0x10, FrameType.results.rawValue])
        #expect(try drain(&reader).isEmpty)
        var grown = 0
        reader.readIntoStorage { buffer in
            grown = buffer.count
            return 0
        }
        // Room for what may come next, not the 256 MiB the header claims.
        #expect(grown <= 2 << 20)
    }

    @Test("a stream that is not the protocol is refused at its first bytes")
    func garbageIsRefused() {
        for garbage in [Array("hello world".utf8), [0x00], [0x53, 0x57, 0x00], Array("SWMP\u{1}\u{0}\u{0}\u{0}".utf8), Array("SWMP\u{3}\u{0}\u{0}\u{0}".utf8), Array("SWMP\u{2}\u{0}\u{1}\u{0}".utf8)] {
            var reader = FrameReader()
            reader.append(garbage)
            #expect(throws: WireError.self, "\(garbage)") { _ = try drain(&reader) }
        }
    }

    @Test("an empty frame and a malformed body are errors, not crashes")
    func malformedFrames() {
        var empty = FrameReader(expectsPreamble: false)
        empty.append([0, 0, 0, 0, 1])
        #expect(throws: WireError.self) { _ = try drain(&empty) }

        // Output for stream 3, which does not exist.
        var badStream = FrameReader(expectsPreamble: false)
        badStream.append([5, 0, 0, 0, FrameType.output.rawValue, 1, 0, 3, 65])
        #expect(throws: WireError.self) { _ = try drain(&badStream) }

        // A hello claiming 100 names in a 3-byte body.
        var lying = FrameReader(expectsPreamble: false)
        lying.append([4, 0, 0, 0, FrameType.workerHello.rawValue, 1, 100, 0])
        #expect(throws: WireError.self) { _ = try drain(&lying) }
    }

    @Test("random bytes after a valid preamble never crash or hang the reader")
    func randomBytes() {
        var generator = SplitMix64(seed: 0x5EED)
        for _ in 0..<20_000 {
            var reader = FrameReader(maximumFrameSize: 4096)
            reader.append(WireProtocol.preamble)
            let count = Int(generator.next() % 64)
            reader.append((0..<count).map { _ in UInt8(truncatingIfNeeded: generator.next()) })
            _ = try? drain(&reader)
        }
    }

    @Test("a results body of successes is scanned in place; anything else is left to the full reader")
    func succeededResultsScan() {
        func body(_ write: (inout WireWriter) -> Void) -> [UInt8] {
            var writer = WireWriter()
            write(&writer)
            return writer.bytes
        }
        let payloads: [[UInt8]] = [[], [7], [UInt8](repeating: 9, count: 300)]
        let good = body { writer in
            for payload in payloads { payload.withUnsafeBytes { WireOutcome.succeeded(codec: 0, payload: $0).write(to: &writer) } }
        }
        var offsets: [Int] = []
        good.withUnsafeBytes { bytes in
            #expect(SucceededResults.scan(bytes, count: 3, offsets: &offsets))
            #expect(offsets == [0, 3, 7, good.count])
            var seen: [[UInt8]] = []
            SucceededResults(bytes: bytes, count: 3).forEach { codec, payload in
                #expect(codec == .binary)
                seen.append(Array(payload))
            }
            #expect(seen == payloads)
            // Too few results claimed (trailing bytes), too many (truncated).
            #expect(!SucceededResults.scan(bytes, count: 2, offsets: &offsets))
            #expect(!SucceededResults.scan(bytes, count: 4, offsets: &offsets))
            #expect(!SucceededResults.scan(UnsafeRawBufferPointer(rebasing: bytes.dropLast()), count: 3, offsets: &offsets))
        }
        let withFailure = body { writer in
            [UInt8]([1]).withUnsafeBytes { WireOutcome.succeeded(codec: 0, payload: $0).write(to: &writer) }
            WireOutcome.threw(typeName: "E", description: "no").write(to: &writer)
        }
        let unknownCodec = body { writer in [UInt8]([1]).withUnsafeBytes { WireOutcome.succeeded(codec: 9, payload: $0).write(to: &writer) } }
        let overlong = body { writer in writer.bytes += [0, 0] + [UInt8](repeating: 0xFF, count: 11) }
        for bad in [withFailure, unknownCodec, overlong] {
            bad.withUnsafeBytes { bytes in
                #expect(!SucceededResults.scan(bytes, count: bad == withFailure ? 2 : 1, offsets: &offsets))
            }
        }
    }

    @Test("varints round-trip at every width and reject overlong encodings")
    func varints() throws {
        let values: [UInt64] = [0, 1, 127, 128, 300, 16_383, 16_384, UInt64(UInt32.max), UInt64.max - 1, UInt64.max]
        for value in values {
            var bytes: [UInt8] = []
            Varint.append(value, to: &bytes)
            var offset = 0
            let decoded = try bytes.withUnsafeBytes { buffer throws(Varint.Failure) in try Varint.read(from: buffer, offset: &offset) }
            #expect(decoded == value)
            #expect(offset == bytes.count)
        }
        let eleven = [UInt8](repeating: 0x80, count: 10) + [0x01]
        var offset = 0
        #expect(throws: Varint.Failure.overlong) { try eleven.withUnsafeBytes { buffer throws(Varint.Failure) in try Varint.read(from: buffer, offset: &offset) } }
        #expect(throws: Varint.Failure.truncated) { try ([0x80, 0x80] as [UInt8]).withUnsafeBytes { buffer throws(Varint.Failure) in try Varint.read(from: buffer, offset: &offset) } }
    }
}

@Suite("The agent's envelopes, byte by byte")
struct AgentEnvelopeTests {
    /// Reads every envelope `bytes` holds, fed `piece` bytes at a time.
    private func envelopes(_ bytes: [UInt8], piece: Int, agentKinds: Bool = true) throws -> [(EnvelopeKind, UInt32, [UInt8])] {
        var reader = EnvelopeReader(acceptsAgentKinds: agentKinds)
        var found: [(EnvelopeKind, UInt32, [UInt8])] = []
        var start = 0
        while start < bytes.count {
            let end = min(bytes.count, start + piece)
            bytes[start..<end].withUnsafeBytes { reader.append($0) }
            start = end
            while let envelope = try reader.next({ kind, channel, payload in (kind, channel, Array(payload)) }) { found.append(envelope) }
        }
        return found
    }

    @Test("envelopes split at every byte boundary come out whole; large data in pieces")
    func splitAtEveryBoundary() throws {
        var writer = EnvelopeWriter()
        writer.writePreamble()
        writer.write(.agentHello, channel: 0) { $0.writeVarint(42); $0.writeString("node7") }
        writer.write(.output, channel: 3, payload: [1, 2, 3])
        writer.write(.exited, channel: 3) { $0.writeByte(1); $0.writeVarint(9) }
        let small = writer.bytes
        for piece in 1...small.count {
            let read = try envelopes(small, piece: piece)
            #expect(read.map(\.0) == [.agentHello, .output, .exited], "pieces of \(piece)")
            #expect(read.map(\.1) == [0, 3, 3])
            #expect(read[1].2 == [1, 2, 3])
        }
        let large = (0..<(AgentProtocol.dataPieceSize * 2 + 17)).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        var pieces = EnvelopeWriter()
        pieces.writePreamble()
        large.withUnsafeBytes { pieces.writePieces(.diagnostics, channel: 9, $0) }
        let read = try envelopes(pieces.bytes, piece: 4093)
        #expect(read.count == 3)
        #expect(read.flatMap(\.2) == large)
    }

    @Test("a stream that is not an agent's is named at its first bytes")
    func strangersAreNamed() {
        func failure(_ bytes: [UInt8], agentKinds: Bool = true) -> String {
            do {
                _ = try envelopes(bytes, piece: bytes.count, agentKinds: agentKinds)
                return "accepted"
            } catch {
                return "\(error)"
            }
        }
        #expect(failure(Array("SWMP".utf8) + [1, 0, 0, 0]).contains("worker of protocol version 1 that does not know agent mode"))
        #expect(failure(Array("Welcome to node7\n".utf8)).contains("does not start with an agent's preamble"))
        #expect(failure(Array("SWMA".utf8) + [3, 0, 0, 0]).contains("speaks protocol version 3"))
        var wrongWay = EnvelopeWriter()
        wrongWay.writePreamble()
        wrongWay.write(.input, channel: 1, payload: [0])
        #expect(failure(wrongWay.bytes).contains("unknown envelope kind 0x3"))
        var huge = AgentProtocol.preamble
        huge += [0xFF, 0xFF, 0xFF, 0x7F, EnvelopeKind.output.rawValue, 1, 0, 0, 0]
        #expect(failure(huge).contains("over the limit"))
    }
}
