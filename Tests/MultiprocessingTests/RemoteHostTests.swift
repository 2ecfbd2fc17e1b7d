import Foundation
import Multiprocessing
import Testing
@testable import fixture_worker

/// Workers behind a host's one connection, with a launcher that runs the agent on this machine:
/// the agent, the envelopes and the relay without ssh in the way.
@Suite("Remote hosts through a launcher", .timeLimit(.minutes(2)))
struct RemoteHostTests {
    /// A host reached with `env`: the agent runs here, but only through its connection.
    static func launcherHost(slots: Int, name: String = "here") -> WorkerHost {
        WorkerHost(.launcher(command: ["env"], name: name), slots: slots)
    }

    @Test("a map through an agent returns every result in order")
    func mapThroughAgent() async throws {
        let results = try await withFixturePool(configure: { $0.hosts = [Self.launcherHost(slots: 2)] }) { pool in
            try await pool.map(Square.self, 0..<20_000)
        }
        #expect(results == (0..<20_000).map { $0 * $0 })
    }

    @Test("a frame larger than the host's outgoing limit crosses whole, in parts, beside other jobs")
    func largeFrameThroughAgent() async throws {
        // 9 MiB: more than the link lets wait to go out (8 MiB), so the loop writes it in
        // parts; every byte differs from its neighbours, so the checksum sees any reordering.
        let payload = [UInt8](unsafeUninitializedCapacity: 9 << 20) { bytes, count in
            for index in bytes.indices { bytes[index] = UInt8(truncatingIfNeeded: index &* 31 &+ index >> 12) }
            count = bytes.count
        }
        try await withFixturePool(configure: { $0.hosts = [Self.launcherHost(slots: 2)] }) { pool in
            async let small = pool.map(Square.self, 0..<2_000)
            let sum = try await pool.run(Checksum.self, payload)
            #expect(sum == Checksum().run(payload))
            #expect(try await small == (0..<2_000).map { $0 * $0 })
        }
    }

    @Test("a crash on a remote worker fails its job alone, with the worker's last words")
    func remoteCrashFailsOneJob() async throws {
        try await withFixturePool(configure: { $0.hosts = [Self.launcherHost(slots: 1)] }) { pool in
            let error = try await #require(throws: ProcessPoolError.self) {
                try await pool.run(Misbehave.self, .writeToStandardError("dying words", thenAbort: true))
            }
            #expect(error.code == .workerCrashed)
            #expect(error.standardErrorTail?.contains("dying words") == true)
            #expect(try await pool.map(Square.self, 0..<100) == (0..<100).map { $0 * $0 })
        }
    }

    @Test("a remote job over its timeout is killed there, and the worker replaced")
    func remoteTimeoutKills() async throws {
        try await withFixturePool(configure: {
            $0.hosts = [Self.launcherHost(slots: 1)]
            $0.terminationGracePeriod = .milliseconds(200)
        }) { pool in
            let error = try await #require(throws: ProcessPoolError.self) {
                try await pool.run(Misbehave.self, .ignoreTerminationAndSleep(milliseconds: 60_000), options: JobOptions(timeout: .milliseconds(300)))
            }
            #expect(error.code == .timedOut)
            #expect(error.terminationStatus == .signaled(SIGKILL))
            #expect(try await pool.submit(Square.self, 12).value == 144)
        }
    }

    @Test("a host that never answers holds up neither the start nor the shutdown")
    func silentHostHoldsNothingUp() async throws {
        let clock = ContinuousClock()
        let start = clock.now
        let results = try await withFixturePool(configure: {
            // `sh -c 'sleep 600'` takes the agent's command as arguments it never runs.
            $0.hosts = [Self.launcherHost(slots: 2), WorkerHost(.launcher(command: ["sh", "-c", "sleep 600"], name: "silent"), slots: 2)]
            $0.hostConnectTimeout = .seconds(60)
        }) { pool in
            try await pool.map(Square.self, 0..<1_000)
        }
        #expect(results == (0..<1_000).map { $0 * $0 })
        // Well under the 60 s the silent host is given to answer.
        #expect(clock.now - start < .seconds(30))
    }

    @Test("a worker path with '=' in it is run, not taken by env for a variable")
    func workerPathWithEqualsSign() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("mp-eq-\(getpid())/a=b c")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder.deletingLastPathComponent()) }
        let path = folder.appendingPathComponent("worker=1").path
        try FileManager.default.createSymbolicLink(atPath: path, withDestinationPath: Binaries.fixtureWorker)
        let results = try await withFixturePool(configure: {
            $0.hosts = [WorkerHost(.launcher(command: ["env"], name: "here"), slots: 1, workerPath: path)]
        }) { pool in
            try await pool.map(Square.self, 0..<10)
        }
        #expect(results == (0..<10).map { $0 * $0 })
    }

    @Test("a host whose agent cannot start is named with the reason, and the pool does not start")
    func unreachableHostIsReported() async throws {
        var configuration = ProcessPoolConfiguration(executablePath: Binaries.fixtureWorker)
        configuration.hosts = [WorkerHost(.launcher(command: ["env"], name: "nowhere"), slots: 1, workerPath: "/nonexistent/worker")]
        configuration.forwardsWorkerStandardError = false
        await #expect {
            try await withProcessPool(configuration: configuration) { pool in
                _ = try await pool.submit(Square.self, 3).value
            }
        } throws: { error in
            guard let error = error as? ProcessPoolError else { return false }
            return error.code == .hostLost && error.message.contains("nowhere") && error.message.contains("127")
        }
    }
}
