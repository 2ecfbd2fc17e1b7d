import Foundation
import Multiprocessing
import Synchronization
import Testing
@testable import fixture_worker

/// Workers on machines of their own, reached with real ssh: sshds in network namespaces with
/// addresses of their own (``SSHTestHosts``). A host is killed or cut off in the middle of a
/// map, and every result must still arrive exactly once.
@Suite("Remote hosts over ssh", .serialized, .timeLimit(.minutes(3)))
struct RemoteSSHTests {
    /// A pool of fixture workers on `hosts`, two slots each; `events` collects what the pool
    /// says about them.
    static func configuration(_ hosts: SSHTestHosts, indices: [Int], slots: Int = 2, events: HostEvents) -> ProcessPoolConfiguration {
        var configuration = ProcessPoolConfiguration(executablePath: Binaries.fixtureWorker)
        configuration.forwardsWorkerStandardError = false
        configuration.hosts = indices.map { .ssh(hosts.names[$0], slots: slots, command: hosts.sshCommand) }
        configuration.hostEventHandler = { event in events.append(event) }
        return configuration
    }

    /// Host events in the order they came, and a way to wait for one.
    final class HostEvents: Sendable {
        private let events = Mutex<[HostEvent]>([])
        private let arrived = AsyncStream<Void>.makeStream()

        func append(_ event: HostEvent) {
            events.withLock { $0.append(event) }
            arrived.continuation.yield()
        }

        var all: [HostEvent] { events.withLock { $0 } }

        /// The reasons given for `host` going down, in order.
        func downReasons(of host: String) -> [String] {
            all.compactMap { event in
                guard case .down(let down, let reason, _) = event, down.description == host else { return nil }
                return reason
            }
        }

        /// Waits until the events so far satisfy `condition` (at once if they do already).
        func wait(until condition: ([HostEvent]) -> Bool) async {
            if condition(all) { return }
            for await _ in arrived.stream where condition(all) { return }
        }
    }

    /// What a map that lost a host delivered, and how often its jobs started.
    struct BrokenHostRun {
        /// How often each index was delivered.
        var deliveries: [Int]
        /// How many times jobs started beyond once each: the reruns of jobs that were running
        /// on the lost host (jobs only queued there were not started, so they are not counted).
        var reruns: Int

        var lost: Int { deliveries.count { $0 == 0 } }
        var duplicated: Int { deliveries.count { $0 > 1 } }
    }

    /// Runs `count` jobs of `LoggedSpin` (each `microseconds` long) unordered; after `trigger`
    /// results have arrived it calls `breakHost` once.
    static func mapBreakingAHost(
        _ pool: ProcessPool, count: Int, microseconds: Int, trigger: Int, breakHost: @Sendable () throws -> Void
    ) async throws -> BrokenHostRun {
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("mp-starts-\(getpid())-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: log) }
        var deliveries = [Int](repeating: 0, count: count)
        var received = 0
        let inputs = (0..<count).map { LoggedSpin.Input(value: $0, microseconds: microseconds, log: log) }
        for try await (index, output) in pool.mapUnordered(LoggedSpin.self, inputs) {
            #expect(output == index * index, "job \(index) returned \(output)")
            deliveries[index] += 1
            received += 1
            if received == trigger { try breakHost() }
        }
        let starts = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n").count
        return BrokenHostRun(deliveries: deliveries, reruns: starts - count)
    }

    @Test("a map over two ssh hosts returns every result in order, and a command line runs there")
    func mapOverTwoHosts() async throws {
        let hosts = try await Self.startHosts(2)
        defer { hosts.stop() }
        let events = HostEvents()
        let results = try await withProcessPool(configuration: Self.configuration(hosts, indices: [0, 1], events: events)) { pool in
            try await pool.map(Square.self, 0..<20_000)
        }
        #expect(results == (0..<20_000).map { $0 * $0 })
        #expect(events.all.filter { if case .up = $0 { true } else { false } }.count == 2)

        // The same command line through the two hosts prints what it prints here.
        let command = ["-k", "--worker", Binaries.poolWorker, "echo", "{}", "{#}", ":::", "a b", "c", "d"]
        let login = hosts.names.map { "1/\($0)" }.joined(separator: ",")
        let here = try await Self.runPool(["run"] + command)
        let there = try await Self.runPool(["run", "--ssh", hosts.sshCommand.joined(separator: " "), "-S", login] + command)
        #expect(here.status == 0 && there.status == 0)
        #expect(there.output == here.output)
        #expect(here.output == "a b 1\nc 2\nd 3\n")
    }

    @Test("a host killed in the middle of a map: its jobs run on the other, none lost, none twice")
    func hostKilledMidMap() async throws {
        let hosts = try await Self.startHosts(2)
        defer { hosts.stop() }
        let events = HostEvents()
        let run = try await withProcessPool(configuration: Self.configuration(hosts, indices: [0, 1], events: events)) { pool in
            try await Self.mapBreakingAHost(pool, count: 4_000, microseconds: 500, trigger: 500) { hosts.killSSHD(1) }
        }
        #expect(run.lost == 0 && run.duplicated == 0, "lost: \(run.lost), twice or more: \(run.duplicated)")
        let reasons = events.downReasons(of: hosts.names[1])
        // Only what the killed host's two workers had started runs again, not the map.
        #expect(run.reruns < 400, "\(run.reruns) reruns")
        print("host killed mid-map: jobs 4000, hosts lost \(Set(reasons).isEmpty ? 0 : 1), reruns \(run.reruns), lost \(run.lost), duplicated \(run.duplicated)")
        #expect(!reasons.isEmpty, "the killed host was never reported down")
        #expect(reasons.first?.contains("connection ended") == true, "\(reasons)")
        #expect(events.downReasons(of: hosts.names[0]).isEmpty)
    }

    @Test("a host cut off in the middle of a map is found by its heartbeats; its jobs run on the other")
    func hostCutOffMidMap() async throws {
        let hosts = try await Self.startHosts(2)
        defer { hosts.stop() }
        let events = HostEvents()
        var configuration = Self.configuration(hosts, indices: [0, 1], events: events)
        configuration.hostTimeout = .seconds(1)
        let onHost = Mutex<[Int32]>([])
        let run = try await withProcessPool(configuration: configuration) { pool in
            try await Self.mapBreakingAHost(pool, count: 4_000, microseconds: 500, trigger: 500) {
                onHost.withLock { $0 = hosts.processes(inHost: 1).filter(Self.isStartedByPool) }
                try hosts.cutLink(1)
            }
        }
        #expect(run.lost == 0 && run.duplicated == 0, "lost: \(run.lost), twice or more: \(run.duplicated)")
        let reasons = events.downReasons(of: hosts.names[1])
        // The cut-off host's workers go on with the batches they hold until their agent gives
        // up, and those results never arrive: those jobs run again, not the map.
        #expect(run.reruns < 400, "\(run.reruns) reruns")
        print("host cut off mid-map: jobs 4000, hosts lost \(Set(reasons).isEmpty ? 0 : 1), reruns \(run.reruns), lost \(run.lost), duplicated \(run.duplicated)")
        #expect(reasons.first?.contains("heartbeats") == true, "\(reasons)")
        // Cut off, the agent hears no heartbeat either: it ends its workers and itself. (The
        // ssh session there waits for TCP to give up, as any would.)
        let stranded = onHost.withLock { $0 }
        #expect(stranded.count >= 3, "the agent and its two workers: \(stranded)")
        for pid in stranded {
            #expect(await awaitExit(of: pid, timeout: .seconds(3)), "process \(pid) outlived its cut-off connection")
        }
        try hosts.restoreLink(1)
    }

    @Test("a host that was lost and answers again is used again")
    func lostHostComesBack() async throws {
        let hosts = try await Self.startHosts(2)
        defer { hosts.stop() }
        let events = HostEvents()
        var configuration = Self.configuration(hosts, indices: [0, 1], events: events)
        configuration.hostTimeout = .seconds(1)
        func ups(_ all: [HostEvent]) -> Int {
            all.count { if case .up(let host) = $0 { host.description == hosts.names[1] } else { false } }
        }
        try await withProcessPool(configuration: configuration) { pool in
            await events.wait { ups($0) == 1 }
            _ = try await pool.map(Square.self, 0..<100)
            let before = Set(hosts.processes(inHost: 1))
            try hosts.cutLink(1)
            await events.wait { _ in !events.downReasons(of: hosts.names[1]).isEmpty }
            try hosts.restoreLink(1)
            await events.wait { ups($0) == 2 }
            // Work enough for every slot: the host's new workers take their share.
            let results = try await pool.map(Spin.self, (0..<2_000).map { [$0, 1_000] })
            #expect(results == (0..<2_000).map { $0 * $0 })
            let started = hosts.processes(inHost: 1).filter { !before.contains($0) && Self.isStartedByPool($0) }
            #expect(started.count >= 3, "a new agent and its two workers: \(started)")
        }
    }

    @Test("a coordinator SIGKILLed mid-map leaves nothing running on its host")
    func coordinatorKilledLeavesNoOrphans() async throws {
        let hosts = try await Self.startHosts(1)
        defer { hosts.stop() }
        let started = try await onDedicatedThread { () throws -> [Int32] in
            let coordinator = Process()
            coordinator.executableURL = URL(fileURLWithPath: Binaries.fixtureWorker)
            coordinator.arguments = ["coordinate-remotely-and-wait"] + hosts.sshCommand + [hosts.names[0]]
            let pipe = Pipe()
            coordinator.standardOutput = pipe
            coordinator.standardError = FileHandle.nullDevice
            try coordinator.run()
            // Blocks until the coordinator's workers there have answered.
            let line = pipe.fileHandleForReading.readLine()
            let started = hosts.processes(inHost: 0)
            kill(coordinator.processIdentifier, SIGKILL)
            coordinator.waitUntilExit()
            return line == "ready" ? started : []
        }
        // The session, the agent and its two workers at least.
        #expect(started.count >= 3, "\(started)")
        for pid in started {
            #expect(await awaitExit(of: pid, timeout: .seconds(2)), "process \(pid) on the host outlived its coordinator")
        }
    }

    @Test("a host that cannot be reached is reported with ssh's words; the run goes on with the others")
    func unreachableHostIsReported() async throws {
        let hosts = try await Self.startHosts(1)
        defer { hosts.stop() }
        let events = HostEvents()
        var configuration = Self.configuration(hosts, indices: [0], events: events)
        configuration.hosts.append(.ssh("no-such-host.invalid", slots: 2, command: hosts.sshCommand))
        configuration.hosts.append(.ssh(hosts.names[0], slots: 1, command: hosts.sshCommand + ["-o", "User=nobody-here"]))
        let results = try await withProcessPool(configuration: configuration) { pool in
            try await pool.map(Square.self, 0..<1_000)
        }
        #expect(results == (0..<1_000).map { $0 * $0 })
        let unknown = events.downReasons(of: "no-such-host.invalid")
        #expect(unknown.first?.contains("no-such-host.invalid") == true, "\(unknown)")
        #expect(unknown.first?.contains("status 255") == true, "\(unknown)")

        // The command line, with GNU parallel's --filter-hosts: the same, the unknown host
        // left out.
        let run = try await Self.runPool([
            "run", "-k", "--worker", Binaries.poolWorker, "--filter-hosts", "--ssh", hosts.sshCommand.joined(separator: " "),
            "-S", "1/no-such-host.invalid,1/\(hosts.names[0])", "echo", ":::", "a", "b", "c",
        ])
        #expect(run.status == 0 && run.output == "a\nb\nc\n", "\(run)")
    }

    @Test("a host without the worker binary gets a copy named by its content, once")
    func workerBinaryIsCopiedOnce() async throws {
        let hosts = try await Self.startHosts(1)
        defer { hosts.stop() }
        let cache = FileManager.default.temporaryDirectory.appendingPathComponent("worker-cache-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: cache) }
        var configuration = ProcessPoolConfiguration(executablePath: Binaries.fixtureWorker)
        configuration.forwardsWorkerStandardError = false
        configuration.hosts = [WorkerHost(.ssh(destination: hosts.names[0], command: hosts.sshCommand), slots: 2, workerCache: cache)]
        for round in 0..<2 {
            let results = try await withProcessPool(configuration: configuration) { pool in try await pool.map(Square.self, 0..<500) }
            #expect(results == (0..<500).map { $0 * $0 }, "round \(round)")
        }
        let folders = try FileManager.default.contentsOfDirectory(atPath: cache)
        #expect(folders.count == 1)
        let copy = cache + "/" + (folders.first ?? "") + "/fixture-worker"
        let original = try Data(contentsOf: URL(fileURLWithPath: Binaries.fixtureWorker))
        #expect(try Data(contentsOf: URL(fileURLWithPath: copy)) == original)
        // Named by its SHA-256, as sha256sum computes it.
        let sum = try SSHTestHosts.run(["/usr/bin/sha256sum", Binaries.fixtureWorker])
        #expect(sum.output.hasPrefix(folders.first ?? "-"))
        // Copied once: a second copy would have replaced the file (a new inode) and left no
        // other trace; the first pool's copy is the one there.
        let firstInode = try FileManager.default.attributesOfItem(atPath: copy)[.systemFileNumber] as? Int
        _ = try await withProcessPool(configuration: configuration) { pool in try await pool.run(Square.self, 3) }
        #expect(try FileManager.default.attributesOfItem(atPath: copy)[.systemFileNumber] as? Int == firstInode)
    }

    @Test("--trc sends each job's file to the host, brings its result back and cleans up; hostile names too")
    func transferReturnCleanup() async throws {
        let hosts = try await Self.startHosts(1)
        defer { hosts.stop() }
        let here = FileManager.default.temporaryDirectory.appendingPathComponent("trc-here-\(UUID().uuidString)")
        let there = FileManager.default.temporaryDirectory.appendingPathComponent("trc-there-\(UUID().uuidString)").path
        defer {
            try? FileManager.default.removeItem(at: here)
            try? FileManager.default.removeItem(atPath: there)
        }
        let names = ["plain.txt", "a file with spaces.txt", "it's; rm -rf $HOME `x`.txt", "sub dir/deeper $(x).txt"]
        for (index, name) in names.enumerated() {
            let url = here.appendingPathComponent(name)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(String(repeating: "line\n", count: index + 1).utf8).write(to: url)
        }
        let (status, output) = try await Self.runPool([
            "run", "-k", "--worker", Binaries.poolWorker, "--ssh", hosts.sshCommand.joined(separator: " "), "-S", "1/\(hosts.names[0])",
            "--workdir", there, "--trc", "{}.count", "sh", "-c", "wc -l < \"$1\" > \"$1.count\"; pwd", "sh", "{}", ":::",
        ] + names, in: here.path)
        #expect(status == 0)
        // Each command ran in the working directory on the host.
        #expect(output == String(repeating: there + "\n", count: names.count), "\(output)")
        for (index, name) in names.enumerated() {
            let count = try String(contentsOf: here.appendingPathComponent(name + ".count"), encoding: .utf8)
            #expect(count.trimmingCharacters(in: .whitespacesAndNewlines) == "\(index + 1)", "\(name)")
            // --cleanup: neither the sent file nor the result is left there.
            #expect(!FileManager.default.fileExists(atPath: there + "/" + name), "\(name) left on the host")
            #expect(!FileManager.default.fileExists(atPath: there + "/" + name + ".count"), "\(name).count left on the host")
        }

        // On this machine (`:`) the files are where they belong already: nothing is sent, and
        // the command runs here, as GNU parallel does it.
        let elsewhere = there + "-not-made"
        let local = try await Self.runPool([
            "run", "-k", "--worker", Binaries.poolWorker, "-S", ":", "--workdir", elsewhere, "--trc", "{}.again",
            "sh", "-c", "wc -l < \"$1\" > \"$1.again\"", "sh", "{}", ":::", names[1],
        ], in: here.path)
        #expect(local.status == 0)
        #expect(!FileManager.default.fileExists(atPath: elsewhere))
        #expect(FileManager.default.fileExists(atPath: here.appendingPathComponent(names[1] + ".again").path))
    }

    @Test("a worker binary missing on the host is reported as such (exit status 127)")
    func missingWorkerBinaryIsReported() async throws {
        let hosts = try await Self.startHosts(1)
        defer { hosts.stop() }
        var configuration = ProcessPoolConfiguration(executablePath: Binaries.fixtureWorker)
        configuration.hosts = [.ssh(hosts.names[0], slots: 1, command: hosts.sshCommand, workerPath: "/no/such dir/worker")]
        let error = try await #require(throws: ProcessPoolError.self) {
            try await withProcessPool(configuration: configuration) { pool in try await pool.run(Square.self, 2) }
        }
        #expect(error.code == .hostLost)
        #expect(error.message.contains(hosts.names[0]) && error.message.contains("127"), "\(error.message)")
    }
}

extension RemoteSSHTests {
    /// Starts `count` hosts off the cooperative pool (starting them blocks for a fraction of a
    /// second).
    static func startHosts(_ count: Int) async throws -> SSHTestHosts {
        try await onDedicatedThread { try SSHTestHosts.start(count: count) }
    }

    /// Whether `pid` is an agent or a worker: its initial environment names the protocol.
    static func isStartedByPool(_ pid: Int32) -> Bool {
        // Read to its end: /proc files say their size is zero.
        guard let file = FileHandle(forReadingAtPath: "/proc/\(pid)/environ") else { return false }
        defer { try? file.close() }
        let environment = file.readDataToEndOfFile()
        return environment.split(separator: 0).contains { String(decoding: $0, as: UTF8.self).hasPrefix("SWIFT_MULTIPROCESSING_") }
    }

    /// Runs the built `pool` with `arguments` (in `directory`); its status and stdout (stderr
    /// is let through).
    static func runPool(_ arguments: [String], in directory: String? = nil) async throws -> (status: Int32, output: String) {
        try await onDedicatedThread {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: Binaries.directory + "/pool")
            process.arguments = arguments
            if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
            let pipe = Pipe()
            process.standardOutput = pipe
            process.standardInput = FileHandle.nullDevice
            try process.run()
            let data = pipe.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return (process.terminationStatus, String(decoding: data, as: UTF8.self))
        }
    }
}

extension FileHandle {
    /// One line, read a byte at a time so nothing after it is taken; nil at the end.
    fileprivate func readLine() -> String? {
        var bytes: [UInt8] = []
        while true {
            let data = readData(ofLength: 1)
            guard let byte = data.first else { return bytes.isEmpty ? nil : String(decoding: bytes, as: UTF8.self) }
            if byte == UInt8(ascii: "\n") { return String(decoding: bytes, as: UTF8.self) }
            bytes.append(byte)
        }
    }
}
