import Foundation
import Multiprocessing
import Synchronization
import Testing
@testable import fixture_worker

@Suite("End to end, with real worker processes", .timeLimit(.minutes(2)))
struct EndToEndTests {
    @Test("map over 100,000 inputs returns exactly the right results in order")
    func mapIsOrderedAndExact() async throws {
        let results = try await withFixturePool { pool in
            try await pool.map(Square.self, 0..<100_000)
        }
        #expect(results.count == 100_000)
        #expect(results == (0..<100_000).map { $0 * $0 })
    }

    @Test("integer ranges of every kind are read exactly: negative, closed, empty, ending at Int.max")
    func integerRangesAreReadExactly() async throws {
        // Ranges of Int take a path of their own (encoded a chunk at a time); a closed range
        // that ends at Int.max cannot, and goes through its iterator.
        try await withFixturePool { pool in
            #expect(try await pool.map(Square.self, -3_000..<3_001) == (-3_000..<3_001).map { $0 &* $0 })
            #expect(try await pool.map(Square.self, -5...5) == (-5...5).map { $0 &* $0 })
            #expect(try await pool.map(Square.self, 7..<7) == [])
            #expect(try await pool.map(Square.self, (Int.max - 2)...Int.max) == ((Int.max - 2)...Int.max).map { $0 &* $0 })
            var seen = Set<Int>()
            for try await (index, output) in pool.mapUnordered(Square.self, 100..<2_100) {
                #expect(output == (100 + index) * (100 + index))
                #expect(seen.insert(index).inserted)
            }
            #expect(seen == Set(0..<2_000))
            // Ranges of more than Int.max values, read only until the caller stops.
            for range in [-1..<Int.max, Int.min..<0] {
                var taken = 0
                for try await (index, output) in pool.mapUnordered(Square.self, range) {
                    #expect(output == (range.lowerBound + index) &* (range.lowerBound + index))
                    taken += 1
                    if taken == 100 { break }
                }
                #expect(taken == 100)
            }
            #expect(try await pool.map(Square.self, (Int.min...(Int.min + 3))) == (Int.min...(Int.min + 3)).map { $0 &* $0 })
        }
    }

    @Test("map reads a non-Sendable lazy sequence on the caller's actor")
    @MainActor
    func mapFromTheMainActor() async throws {
        var offset = 10  // main-actor state, read by the sequence's closure
        offset += 1
        let inputs = (0..<5000).lazy.map { $0 + offset }
        let results = try await withFixturePool { pool in
            try await pool.map(Square.self, inputs)
        }
        #expect(results == (0..<5000).map { ($0 + 11) * ($0 + 11) })
    }

    @Test("mapUnordered yields every index exactly once, with its own output")
    func mapUnorderedYieldsEachIndexOnce() async throws {
        let inputs = (0..<20_000).map { $0 * 3 - 7 }
        var seen = [Bool](repeating: false, count: inputs.count)
        var count = 0
        try await withFixturePool { pool in
            for try await (index, output) in pool.mapUnordered(Square.self, inputs) {
                #expect(!seen[index], "index \(index) yielded twice")
                seen[index] = true
                #expect(output == inputs[index] * inputs[index])
                count += 1
            }
        }
        #expect(count == inputs.count)
        #expect(seen.allSatisfy { $0 })
    }

    @Test("a job that throws fails alone, with the error's type and description")
    func throwingJobFailsAlone() async throws {
        try await withFixturePool { pool in
            let bad = try await pool.submit(Misbehave.self, .throwError("odd input"))
            let good = try await pool.submit(Misbehave.self, .succeed(41))
            let error = try await #require(throws: ProcessPoolError.self) { try await bad.value }
            #expect(error.code == .jobThrew)
            #expect(error.message == "fixture refused: odd input")
            #expect(error.remoteErrorType?.hasSuffix("FixtureError") == true)
            #expect(error.jobName == "misbehave")
            #expect(try await good.value == 41)
            #expect(try await pool.run(Square.self, 12) == 144)
        }
    }

    @Test("whenComplete reports each job's outcome once, without a task per job")
    func whenCompleteReportsOutcomes() async throws {
        try await withFixturePool { pool in
            let (outcomes, sink) = AsyncStream<(Int, Result<Int, any Error>)>.makeStream()
            let inputs = 0..<200
            var futures: [JobFuture<Int>] = []
            for input in inputs {
                let future = try await pool.submit(Misbehave.self, input == 7 ? .throwError("seven") : .succeed(input))
                future.whenComplete { sink.yield((input, $0)) }
                futures.append(future)
            }
            var seen: [Int: Result<Int, any Error>] = [:]
            for await (input, outcome) in outcomes {
                #expect(seen[input] == nil, "input \(input) reported twice")
                seen[input] = outcome
                if seen.count == inputs.count { break }
            }
            for input in inputs where input != 7 {
                #expect((try? seen[input]?.get()) == input)
            }
            let error = try #require(seen[7].flatMap { result -> ProcessPoolError? in
                if case .failure(let error) = result { return error as? ProcessPoolError }
                return nil
            })
            #expect(error.code == .jobThrew)
            // Registered after the job finished: called at once, with the same outcome.
            let late = Mutex<Int?>(nil)
            futures[3].whenComplete { outcome in late.withLock { $0 = try? outcome.get() } }
            #expect(late.withLock { $0 } == 3)
            // A cancelled job reports the cancellation.
            let slow = try await pool.submit(Spin.self, [1, 5_000_000])
            let cancelled = Mutex<Bool?>(nil)
            slow.whenComplete { outcome in
                if case .failure(let error) = outcome { cancelled.withLock { $0 = error is CancellationError } }
            }
            slow.cancel()
            #expect(cancelled.withLock { $0 } == true)
        }
    }

    @Test("large and small inputs mixed in batches arrive intact, byte for byte")
    func largeInputsArriveIntact() async throws {
        // Inputs of 64 KiB and more are written from their chunk with writev rather than
        // copied; interleave them with small ones so one batch mixes both kinds.
        let sizes = (0..<48).map { index in index % 3 == 0 ? 17 : [65_536, 65_537, 300_000, 1_000_000][index % 4] }
        // Making 17 MB of inputs and their checksums takes seconds in a debug build on a loaded
        // machine: on a thread of its own, not one of the cooperative pool's few, which every
        // other test's tasks need meanwhile.
        let (inputs, expected) = try await onDedicatedThread {
            var random = SplitMix64(seed: 7)
            let inputs = sizes.map { size in (0..<size).map { _ in UInt8(truncatingIfNeeded: random.next()) } }
            return (inputs, inputs.map(fnv1a))
        }
        try await withFixturePool { pool in
            let checksums = try await pool.map(Checksum.self, inputs)
            #expect(checksums == expected)
            // And one at a time, through futures.
            let futures = try await inputs.prefix(8).asyncMap { try await pool.submit(Checksum.self, $0) }
            for (future, checksum) in zip(futures, expected.prefix(8)) {
                #expect(try await future.value == checksum)
            }
        }
    }

    @Test("outputs of every length class arrive intact, byte for byte, mixed in batches")
    func largeOutputsArriveIntact() async throws {
        // The worker encodes each output in place behind a five-byte room for its length: short
        // outputs move up to the shortest length, those of 64 KiB and more keep a padded one.
        // Cover each boundary of the varint, and the padding threshold, in one batch.
        let sizes = [0, 1, 127, 128, 16_383, 16_384, 65_535, 65_536, 65_537, 300_000, 2_097_151, 2_097_152, 17]
        let requests = sizes.enumerated().map { RandomBytes.Request(seed: UInt64($0.offset), count: $0.element) }
        // Off the cooperative pool, like the inputs of largeInputsArriveIntact: seconds of work.
        let expected = try await onDedicatedThread { (requests + requests.reversed()).map { randomBytes(seed: $0.seed, count: $0.count) } }
        try await withFixturePool { pool in
            let outputs = try await pool.map(RandomBytes.self, requests + requests.reversed())
            let intact = try await onDedicatedThread { outputs == expected }
            #expect(intact, "sizes \(outputs.map(\.count)), expected \(expected.map(\.count))")
        }
    }

    @Test("an output that does not decode as the caller's type fails map and mapUnordered, naming the input")
    func undecodableOutputs() async throws {
        try await withFixturePool { pool in
            // The worker's "square" returns an Int; this caller expects a String.
            let error = try await #require(throws: ProcessPoolError.self) { try await pool.map(SquareAsText.self, 0..<50) }
            #expect(error.code == .decodingFailed)
            #expect(error.message.contains("String"))
            #expect(error.inputIndex != nil)
            let unordered = try await #require(throws: ProcessPoolError.self) {
                for try await _ in pool.mapUnordered(SquareAsText.self, 0..<50) {}
            }
            #expect(unordered.code == .decodingFailed)
            // The pool is fine afterwards.
            #expect(try await pool.map(Square.self, 0..<5) == [0, 1, 4, 9, 16])
        }
    }

    @Test("mapResults reports each failure at its index and every other result")
    func mapResultsKeepsGoing() async throws {
        let inputs: [Misbehaviour] = (0..<3000).map { $0 % 500 == 7 ? .throwError("bad \($0)") : .succeed($0) }
        let results = try await withFixturePool { pool in
            try await pool.mapResults(Misbehave.self, inputs)
        }
        #expect(results.count == inputs.count)
        for (index, result) in results.enumerated() {
            switch result {
            case .success(let value):
                #expect(index % 500 != 7)
                #expect(value == index)
            case .failure(let error):
                #expect(index % 500 == 7)
                #expect(error.code == .jobThrew)
                #expect(error.inputIndex == index)
                #expect(error.message == "fixture refused: bad \(index)")
            }
        }
    }

    @Test("map throws the first failure with the input index, and the pool stays usable")
    func mapFailureNamesTheIndex() async throws {
        try await withFixturePool { pool in
            let inputs: [Misbehaviour] = (0..<1000).map { $0 == 613 ? .throwError("this one") : .succeed($0) }
            let error = try await #require(throws: ProcessPoolError.self) { try await pool.map(Misbehave.self, inputs) }
            #expect(error.inputIndex == 613)
            #expect(error.code == .jobThrew)
            #expect("\(error)".contains("input 613"))
            #expect(try await pool.map(Square.self, [2, 3]) == [4, 9])
        }
    }

    @Test(
        "a job that kills its worker fails alone with workerCrashed and the right status",
        arguments: [
            (Misbehaviour.fatalError("fixture fatal error"), TerminationStatus.signaled(SIGILL)),
            (.abort, .signaled(SIGABRT)),
            (.exit(3), .exited(3)),
            (.killSelf(SIGKILL), .signaled(SIGKILL)),
            (.segfault, .signaled(SIGSEGV)),
        ])
    func crashIsIsolated(action: Misbehaviour, expected: TerminationStatus) async throws {
        try await withFixturePool { pool in
            let before = try await pool.map(Square.self, 0..<200)
            let crashing = try await pool.submit(Misbehave.self, action)
            let others = try await (0..<50).asyncMap { try await pool.submit(Misbehave.self, .succeed($0)) }
            let error = try await #require(throws: ProcessPoolError.self) { try await crashing.value }
            #expect(error.code == .workerCrashed)
            #expect(error.terminationStatus == expected)
            #expect(error.workerProcessID != nil)
            #expect(error.jobName == "misbehave")
            if case .fatalError(let message) = action {
                #expect(error.standardErrorTail?.contains(message) == true)
            }
            for (index, future) in others.enumerated() {
                #expect(try await future.value == index)
            }
            // The pool replaced the worker and takes more work.
            #expect(try await pool.map(Square.self, 0..<200) == before)
            #expect(pool.workerProcessIDs.count == 2)
        }
    }

    @Test("crashes inside large batches fail exactly the crashing jobs")
    func crashesInsideBatches() async throws {
        let crashAt: Set<Int> = [1234, 4321]
        let inputs: [Misbehaviour] = (0..<6000).map { crashAt.contains($0) ? .exit(9) : .succeed($0) }
        let results = try await withFixturePool { pool in
            try await pool.mapResults(Misbehave.self, inputs)
        }
        for (index, result) in results.enumerated() {
            if crashAt.contains(index) {
                #expect(throws: ProcessPoolError.self) { try result.get() }
                if case .failure(let error) = result {
                    #expect(error.code == .workerCrashed)
                    #expect(error.terminationStatus == .exited(9))
                }
            } else {
                #expect(try result.get() == index)
            }
        }
    }

    @Test("a job that prints to stdout does not disturb the protocol")
    func printingJob() async throws {
        let results = try await withFixturePool { pool in
            try await pool.map(Misbehave.self, (0..<200).map { Misbehaviour.printToStandardOutput(lines: 5, value: $0) })
        }
        #expect(results == Array(0..<200))
    }

    @Test("an unknown job name fails with the names the worker serves")
    func unknownJob() async throws {
        try await withFixturePool { pool in
            let error = try await #require(throws: ProcessPoolError.self) { try await pool.run(NotServed.self, 1) }
            #expect(error.code == .unknownJob)
            #expect(error.jobName == "not-served")
            #expect(error.availableJobNames?.contains("square") == true)
            #expect("\(error)".contains("\"not-served\""))
        }
    }

    @Test("a missing worker executable is a spawn error naming the path and errno")
    func missingExecutable() async throws {
        let path = "/nonexistent/directory/worker-\(UUID().uuidString)"
        let error = try await #require(throws: ProcessPoolError.self) {
            try await withProcessPool(workers: 1, executable: path) { _ in }
        }
        #expect(error.code == .spawnFailed)
        #expect(error.executablePath == path)
        #expect(error.errno == Errno(rawValue: ENOENT))
        #expect("\(error)".contains(path) && "\(error)".contains("ENOENT"))
    }

    @Test("a worker file that is not executable is a spawn error with EACCES")
    func nonExecutableFile() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("not-executable-\(UUID().uuidString)").path
        #expect(FileManager.default.createFile(atPath: path, contents: Data("#!/bin/sh\n".utf8), attributes: [.posixPermissions: 0o644]))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let error = try await #require(throws: ProcessPoolError.self) {
            try await withProcessPool(workers: 1, executable: path) { _ in }
        }
        #expect(error.code == .spawnFailed)
        #expect(error.errno == Errno(rawValue: EACCES))
    }

    @Test("one job instance per worker process is created and reused")
    func instanceIsReused() async throws {
        let replies = try await withFixturePool(workers: 1) { pool in
            try await pool.map(CountCalls.self, 0..<50)
        }
        #expect(Set(replies.map { $0[0] }).count == 1)
        #expect(replies.map { $0[1] } == (1...50).map(Int32.init))
    }

    @Test("nested Codable values cross the process boundary intact")
    func recordsRoundTrip() async throws {
        let records = (0..<300).map { index in
            Record(
                id: index, name: "récord \(index) 🚀", tags: index % 2 == 0 ? [] : ["a", "b"],
                scores: [Double(index), -0.5, .infinity], blob: Data((0..<(index % 40)).map { UInt8($0) }),
                parent: index % 3 == 0 ? nil : index - 1, attributes: ["size": index])
        }
        let transformed = try await withFixturePool { pool in try await pool.map(TransformRecord.self, records) }
        for (record, result) in zip(records, transformed) {
            #expect(result.id == record.id + 1)
            #expect(result.name == record.name.uppercased())
            #expect(result.tags == record.tags + ["seen"])
            #expect(result.scores == record.scores.map { $0 * 2 })
            #expect(result.blob == Data(record.blob.reversed()))
            #expect(result.parent == record.parent)
            #expect(result.attributes == ["size": record.id, "count": 1])
        }
    }

    @Test("with a small frame limit, batches are cut to fit and only oversized values fail")
    func smallFrameLimit() async throws {
        try await withFixturePool(configure: {
            $0.maximumFrameSize = 64 * 1024
            $0.batchSize = 100_000
        }) { pool in
            // Many small inputs: batches must be split to fit the limit, not fail.
            let squares = try await pool.mapResults(Square.self, 0..<100_000)
            #expect(squares.allSatisfy { (try? $0.get()) != nil })
            // Many medium outputs: the worker must split its results frames.
            let sizes = try await pool.map(MakeBytes.self, Array(repeating: 20_000, count: 40))
            #expect(sizes.map(\.count) == Array(repeating: 20_000, count: 40))
            // An input over the limit fails at submit, naming the sizes.
            let tooBig = [UInt8](repeating: 1, count: 100_000)
            let submitError = try await #require(throws: ProcessPoolError.self) { try await pool.submit(CountBytes.self, tooBig) }
            #expect(submitError.code == .encodingFailed)
            #expect(submitError.message.contains("65536"))
            // An output over the limit fails in the worker, and the worker lives on.
            let outputError = try await #require(throws: ProcessPoolError.self) { try await pool.run(MakeBytes.self, 100_000) }
            #expect(outputError.code == .encodingFailed)
            #expect(try await pool.run(CountBytes.self, [1, 2, 3]) == 3)
        }
    }

    @Test(
        "a worker that breaks the protocol fails its job with protocolViolation instead of losing it",
        arguments: ["trailing-byte", "garbage", "huge-length", "truncated", "close-output"])
    func brokenWorker(mode: String) async throws {
        try await withFixturePool(workers: 1, configure: { $0.arguments = ["serve-broken", mode] }) { pool in
            let error = try await #require(throws: ProcessPoolError.self) { try await pool.run(Square.self, 7) }
            #expect(error.code == .protocolViolation, "\(error)")
            #expect(error.workerProcessID != nil)
            if mode == "truncated" { #expect(error.message.contains("in the middle of a frame"), "\(error)") }
            if mode == "close-output" { #expect(error.message.contains("closed its output"), "\(error)") }
        }
    }

    @Test("the standalone pool-worker binary serves its jobs")
    func poolWorkerBinary() async throws {
        let reply = try await withProcessPool(workers: 1, executable: Binaries.poolWorker) { pool in
            try await pool.run(Echo.self, "héllo, wörld")
        }
        #expect(reply == "héllo, wörld")
    }

    @Test("CommandJob passes arguments that are not UTF-8 to the command byte for byte")
    func commandArgumentBytes() async throws {
        let latin1: [UInt8] = Array("caf".utf8) + [0xE9]
        let input = CommandJob.Input(argumentBytes: [Array("printf".utf8), Array("%s|".utf8), latin1, Array("plain".utf8)])
        let output = try await withProcessPool(workers: 1, executable: Binaries.poolWorker) { pool in
            try await pool.run(CommandJob.self, input)
        }
        #expect(output.standardOutput == latin1 + Array("|plain|".utf8))

    }

    #if os(Linux)
    /// Loading FoundationEssentials would cost every worker about 2 MiB of resident memory, so
    /// the library does without it; this keeps a dependency from creeping back in.
    @Test("the standalone pool-worker does not load Foundation")
    func poolWorkerWithoutFoundation() async throws {
        let libraries = try await withProcessPool(workers: 1, executable: Binaries.poolWorker) { pool in
            _ = try await pool.run(Echo.self, "warm")
            let pid = try #require(pool.workerProcessIDs.first)
            // Read to the end: /proc files claim a size of 0, and one read returns a page.
            let maps = try #require(FileHandle(forReadingAtPath: "/proc/\(pid)/maps")).readDataToEndOfFile()
            return Set(String(decoding: maps, as: UTF8.self).split(separator: "\n").compactMap { $0.split(separator: "/").last.map(String.init) })
        }
        #expect(libraries.contains { $0.hasPrefix("libswiftCore") }, "\(libraries)")
        #expect(!libraries.contains { $0.contains("Foundation") }, "\(libraries.sorted())")
    }
    #endif
}

extension Sequence {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var results: [T] = []
        for element in self { results.append(try await transform(element)) }
        return results
    }
}

/// Claims the fixture's "square" job but expects text back: its outputs cannot decode.
struct SquareAsText: Job {
    static let name = "square"
    func run(_ n: Int) -> String { String(n * n) }
}
