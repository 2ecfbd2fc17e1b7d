// Valid inputs for both targets, built with the real encoders. SeedGenerator.swift writes them
// to corpus/ for libFuzzer; MutationDriver.swift mutates them in memory.

import Foundation

enum FuzzSeeds {
    static func sampleRecord(_ id: Int) -> FuzzRecord {
        let inner = FuzzInner(name: "inner-\(id)", score: id.isMultiple(of: 2) ? 2.5 : nil, tags: ["a", "bé", ""],
                              flag: true, small: -7, wide: UInt64.max - UInt64(id))
        return FuzzRecord(
            id: id, title: id.isMultiple(of: 2) ? "title \(id)" : nil, values: [0, -1, 1, Int.max, Int.min, 300],
            counts: ["one": 1, "two": 2, "minus": -5], inner: inner, children: [inner, inner],
            shape: .many([.point, .circle(radius: 1.5), .labeled("l", nil), .labeled("m", 4), .nested(inner)]),
            blob: Data([0, 1, 2, 0xFF]), matrix: [[1, 2], [], [3.25]], maybeNumbers: [1, nil, 3],
            byIndex: [1: "x", 20: "y"], floats: [1.5, -0.0], unsigned: [0, UInt32.max])
    }

    /// Payload seeds: (file name, bytes).
    static func payloads() -> [(String, [UInt8])] {
        let encoder = BinaryPayloadEncoder()
        var seeds: [(String, [UInt8])] = []
        func add<T: Encodable>(_ name: String, _ value: T) {
            seeds.append((name, try! encoder.encode(value)))
        }
        // Seeds must be valid: each one round-trips through the decoder.
        func add<T: Codable & Equatable>(_ name: String, _ value: T) {
            let bytes = try! encoder.encode(value)
            let decoded = try! BinaryPayloadDecoder().decode(T.self, from: bytes)
            precondition(decoded == value, "seed \(name) does not round-trip")
            seeds.append((name, bytes))
        }
        add("record", sampleRecord(1))
        add("record-even", sampleRecord(2))
        add("records", [sampleRecord(3), sampleRecord(4)])
        add("inner-optional", FuzzInner?.some(sampleRecord(5).inner!))
        add("shape", FuzzShape.labeled("label", 42))
        add("tree", FuzzTree.node("root", [.leaf(1), .wrap(.leaf(2)), .node("n", [.wrap(nil)])]))
        var deep = FuzzTree.leaf(0)
        for index in 0..<40 { deep = .node("d\(index)", [deep]) }
        add("tree-deep", deep)
        add("custom", FuzzCustom(a: 7, b: "bee", c: [1, -2, 300], d: true, nested: ["x": 1, "y": 2, "z": 3]))
        add("custom-nil", FuzzCustom(a: -1, b: nil, c: [], d: false, nested: ["x": 0, "y": -1]))
        add("tolerant", FuzzTolerant(first: sampleRecord(8).inner, second: [.point, .circle(radius: 3)], third: 5,
                                     rest: [.leaf(1), .node("n", [.leaf(2)])]))
        add("derived", FuzzDerived(baseValue: ["p", "q"], derivedValue: 9))
        add("dictionary", ["alpha": 1, "beta": -2, "gamma": 1 << 40])
        add("string", "héllo, wörld")
        add("ints", [1, -1, 1 << 62, 0])
        add("optional-strings", ["a", nil, "c"] as [String?])
        add("bytes", [UInt8](0..<16))
        add("doubles", [1.0, .infinity, -2.5])
        add("data", Data([1, 2, 3]))
        add("double", 3.14159)
        add("int-optional", Int?.some(-12345))
        add("int8", Int8(-3))
        return seeds
    }

    /// Frame seeds: (file name, bytes). Each starts with the two split-position bytes that
    /// `fuzzFrames` consumes; most continue with frames without a preamble (`fuzzFrames` adds one
    /// itself), one with a preamble.
    static func frames() -> [(String, [UInt8])] {
        let record = try! BinaryPayloadEncoder().encode(sampleRecord(7))
        let ints = try! BinaryPayloadEncoder().encode([5, 6, 7])
        var seeds: [(String, [UInt8])] = []
        func add(_ name: String, splits: (UInt8, UInt8) = (3, 9), _ build: (inout WireWriter) -> Void) {
            var writer = WireWriter()
            build(&writer)
            seeds.append((name, [splits.0, splits.1] + writer.bytes))
        }
        add("worker-hello") { WorkerHello(processID: 4242, jobNames: ["square", "échoé", ""]).write(to: &$0) }
        add("coordinator-hello") { CoordinatorHello(maximumFrameSize: 65536).write(to: &$0) }
        add("jobs", splits: (17, 40)) { writer in
            let frame = JobsFrameWriter(batchID: 99, flags: .reportEachResult, count: 3, into: &writer)
            record.withUnsafeBytes { frame.append(jobIndex: 0, codec: 0, payload: $0, into: &writer) }
            ints.withUnsafeBytes { frame.append(jobIndex: 1, codec: 0, payload: $0, into: &writer) }
            Array("[1,2]".utf8).withUnsafeBytes { frame.append(jobIndex: 300, codec: 1, payload: $0, into: &writer) }
            try! frame.end(into: &writer, maximumFrameSize: fuzzMaximumFrameSize)
        }
        add("results", splits: (5, 200)) { writer in
            let start = writer.beginFrame(.results)
            ResultsHeader(batchID: 99, firstPosition: 2, count: 5, elapsedNanoseconds: 123_456_789).write(to: &writer)
            record.withUnsafeBytes { WireOutcome.succeeded(codec: 0, payload: $0).write(to: &writer) }
            WireOutcome.threw(typeName: "MyError", description: "it failed").write(to: &writer)
            WireOutcome.inputDecodingFailed("bad input").write(to: &writer)
            WireOutcome.outputEncodingFailed("bad output").write(to: &writer)
            WireOutcome.unknownJob(index: 77).write(to: &writer)
            try! writer.endFrame(startingAt: start, maximumFrameSize: fuzzMaximumFrameSize)
        }
        add("conversation", splits: (0, 255)) { writer in
            WorkerHello(processID: 1, jobNames: ["a"]).write(to: &writer)
            CoordinatorHello(maximumFrameSize: 1 << 20).write(to: &writer)
            let frame = JobsFrameWriter(batchID: 1, count: 1, into: &writer)
            ints.withUnsafeBytes { frame.append(jobIndex: 0, codec: 0, payload: $0, into: &writer) }
            try! frame.end(into: &writer, maximumFrameSize: fuzzMaximumFrameSize)
            let shutdown = writer.beginFrame(.shutdown)
            try! writer.endFrame(startingAt: shutdown, maximumFrameSize: fuzzMaximumFrameSize)
            let fatal = writer.beginFrame(.fatal)
            writer.bytes.append(contentsOf: Array("worker gave up".utf8))
            try! writer.endFrame(startingAt: fatal, maximumFrameSize: fuzzMaximumFrameSize)
        }
        add("with-preamble", splits: (2, 6)) { writer in
            writer.writePreamble()
            WorkerHello(processID: 5, jobNames: ["x", "y"]).write(to: &writer)
        }
        return seeds
    }
}
