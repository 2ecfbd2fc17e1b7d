import Foundation
import Multiprocessing

#if canImport(Glibc)
import Glibc
#endif

/// The sizes of a run: the issue's, or a seconds-long smoke version (`--quick`).
struct Sizes {
    var tinyJobs = 2_000_000
    var tinyJobsChunksizeOne = 20_000
    var submits = 200_000
    var roundTrips = 2_000
    var cpuJobs = 400
    var payloadJobs = 64
    var payloadBytes = 8 << 20
    var commandJobs = 2_000
    var lazyMapInputs = 10_000_000
    var pipeBytes = 256 << 20
    /// Scenario j: payloads (of `payloadBytes`) through one remote host, and `sleep 0.05` jobs
    /// over two.
    var remotePayloadJobs = 16
    var sleepJobs = 1_000

    static let quick = Sizes(
        tinyJobs: 100_000, tinyJobsChunksizeOne: 2_000, submits: 10_000, roundTrips: 200, cpuJobs: 40,
        payloadJobs: 8, payloadBytes: 1 << 20, commandJobs: 200, lazyMapInputs: 200_000, pipeBytes: 32 << 20,
        remotePayloadJobs: 4, sleepJobs: 100)
}

/// Where the things the suite runs live.
struct Paths {
    /// `Benchmarks/`.
    let benchmarks: String
    var mainPackage: String { benchmarks + "/.." }
    var pool: String { mainPackage + "/.build/release/pool" }
    var poolWorker: String { mainPackage + "/.build/release/pool-worker" }
    var pythonBaselines: String { benchmarks + "/baselines/pools.py" }
    /// The `trivial` program, built next to this one.
    var trivial: String { URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("trivial").path }

    init() {
        benchmarks = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    }
}

/// Finds `name` in PATH.
func which(_ name: String) -> String? {
    for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
        let candidate = "\(directory)/\(name)"
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    return nil
}

/// Runs a program to completion with stdout captured; throws if it fails.
@discardableResult
func runProgram(_ path: String, _ arguments: [String], standardInput: String? = nil) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    let output = Pipe()
    process.standardOutput = output
    if let standardInput { process.standardInput = FileHandle(forReadingAtPath: standardInput) }
    try process.run()
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw BenchmarkError("\(path) \(arguments.joined(separator: " ")) exited with \(process.terminationStatus)")
    }
    return String(decoding: data, as: UTF8.self)
}

/// Scenario i's input, made when the scenario first runs; the suite removes it at the end.
let pipeInputFile = NSTemporaryDirectory() + "bench-pipe-\(getpid()).txt"

/// Writes numbered lines (`1\n2\n3\n…`) to `path`, as many whole lines as fit in `limit`
/// bytes, in 8 MiB chunks; returns the file's size and its number of newlines.
func writeNumberedLines(to path: String, limit: Int) throws -> (bytes: Int, lines: Int) {
    guard FileManager.default.createFile(atPath: path, contents: nil), let file = FileHandle(forWritingAtPath: path) else {
        throw BenchmarkError("cannot create \(path)")
    }
    defer { try? file.close() }
    let chunkSize = 8 << 20
    var chunk = [UInt8](repeating: 0, count: chunkSize + 32)
    var digits: [UInt8] = [UInt8(ascii: "1")]  // the next line's number
    var bytes = 0, lines = 0, used = 0
    while bytes + used + digits.count + 1 <= limit {
        for digit in digits {
            chunk[used] = digit
            used += 1
        }
        chunk[used] = UInt8(ascii: "\n")
        used += 1
        lines += 1
        var index = digits.count - 1
        while index >= 0, digits[index] == UInt8(ascii: "9") {
            digits[index] = UInt8(ascii: "0")
            index -= 1
        }
        if index >= 0 { digits[index] += 1 } else { digits.insert(UInt8(ascii: "1"), at: 0) }
        if used >= chunkSize {
            try file.write(contentsOf: chunk[..<used])
            bytes += used
            used = 0
        }
    }
    try file.write(contentsOf: chunk[..<used])
    return (bytes + used, lines)
}

/// Runs the Python baseline once and returns the named field of its JSON report.
func python(_ python: String, _ paths: Paths, _ scenario: String, workers: Int, _ extra: [String] = [], field: String = "value") throws -> Double {
    try pythonFigures(python, paths, scenario, workers: workers, extra, fields: [field])[0]
}

/// Several figures from one run of a Python baseline.
func pythonFigures(_ python: String, _ paths: Paths, _ scenario: String, workers: Int, _ extra: [String] = [], fields: [String]) throws -> [Double] {
    let output = try runProgram(python, [paths.pythonBaselines, scenario, "--workers", String(workers)] + extra)
    guard let line = output.split(separator: "\n").last,
        let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
    else { throw BenchmarkError("the Python baseline \(scenario) printed no JSON: \(output.suffix(200))") }
    return try fields.map { field in
        guard let value = object[field] as? Double else { throw BenchmarkError("the Python baseline \(scenario) printed no \(field)") }
        return value
    }
}

/// One job's round trips through `pool.run`, after 100 untimed ones, in seconds.
func roundTrips(_ pool: ProcessPool, _ count: Int) async throws -> [Double] {
    try await roundTrips(count) { input in _ = try await pool.run(Increment.self, input) }
}

/// `count` timed calls of `trip` (given its call's number), after 100 untimed ones, in seconds.
func roundTrips(_ count: Int, _ trip: (Int) async throws -> Void) async throws -> [Double] {
    var samples: [Double] = []
    samples.reserveCapacity(count)
    let clock = ContinuousClock()
    for input in 0..<(count + 100) {
        let start = clock.now
        try await trip(input)
        if input >= 100 { samples.append(seconds(clock.now - start)) }
    }
    return samples
}

/// p50 and p99 of round trips in seconds, in microseconds.
func percentiles(_ samples: [Double]) -> [Double] {
    [percentile(samples, 0.5) * 1e6, percentile(samples, 0.99) * 1e6]
}

func percentile(_ values: [Double], _ fraction: Double) -> Double {
    let sorted = values.sorted()
    return sorted[min(sorted.count - 1, Int((Double(sorted.count - 1) * fraction).rounded()))]
}

/// A process's resident memory in MiB, from /proc: all of it (`VmRSS`), or only what is its
/// own (`RssAnon`: not the shared libraries' pages, which every process using them shares).
func residentMiB(of pid: Int32, field: String = "VmRSS") -> Double? {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
        let line = status.split(separator: "\n").first(where: { $0.hasPrefix(field + ":") }),
        let kib = line.split(separator: " ").dropFirst().first.flatMap({ Double($0) })
    else { return nil }
    return kib / 1024
}

/// The job type the shipped `pool-worker` serves besides commands.
struct Echo: Job {
    static let name = "echo"
    func run(_ input: String) -> String { input }
}

func scenarios(workers: Int, sizes: Sizes, paths: Paths) async throws -> [Scenario] {
    let clock = ContinuousClock()
    let python3 = which("python3")
    let noPython = python3 == nil ? "python3 is not installed" : nil
    let py = python3 ?? ""
    // One warm pool of this program's own workers, shared by the throughput scenarios (as the
    // Python baselines time their pools after a warm-up job).
    func withWarmPool<T>(_ body: (ProcessPool) async throws -> T) async throws -> T {
        try await withProcessPool(workers: workers, arguments: []) { pool in
            _ = try await pool.run(Increment.self, 0)
            return try await body(pool)
        }
    }

    // d: calibrate a crunch of about 5 ms on one core.
    // (Results are kept and checked, or the optimizer may drop the calls.)
    var rounds = 1_000_000
    var keep: UInt64 = 0
    for attempt in 0..<3 {
        let took = seconds(clock.measure { keep &+= crunch(rounds, seed: attempt) })
        rounds = max(1_000, Int(Double(rounds) * 0.005 / max(took, 1e-6)))
    }
    precondition(keep != 1)
    let crunchRounds = rounds

    let noPoolWorker = FileManager.default.isExecutableFile(atPath: paths.poolWorker) ? nil : "build it first: swift build -c release"
    let payload = [UInt8](repeating: 5, count: sizes.payloadBytes)
    let payloadMiB = Double(sizes.payloadJobs * sizes.payloadBytes) / 1_048_576

    let inputsFile = NSTemporaryDirectory() + "bench-inputs-\(getpid()).txt"
    try (1...sizes.commandJobs).map(String.init).joined(separator: "\n").appending("\n").write(toFile: inputsFile, atomically: true, encoding: .utf8)

    func timed(_ body: () async throws -> Void) async rethrows -> Double {
        let start = clock.now
        try await body()
        return seconds(clock.now - start)
    }

    // i: the numbered lines, written once, by the first run that needs them.
    var pipeInput: (bytes: Int, lines: Int)?
    func numberedLines() throws -> (bytes: Int, lines: Int) {
        if let pipeInput { return pipeInput }
        let made = try writeNumberedLines(to: pipeInputFile, limit: sizes.pipeBytes)
        pipeInput = made
        return made
    }
    // One run of a command that prints line counts (one per job): MiB/s, once the counts add
    // up to the file's lines.
    func countLines(_ program: String, _ arguments: [String], fromStandardInput: Bool) async throws -> Double {
        let input = try numberedLines()
        var output = ""
        let time = try await timed {
            output = try runProgram(program, arguments, standardInput: fromStandardInput ? pipeInputFile : nil)
        }
        var counted = 0
        for line in output.split(separator: "\n") {
            guard let count = Int(line.trimmingCharacters(in: .whitespaces)) else { throw BenchmarkError("not a line count: \(line)") }
            counted += count
        }
        guard counted == input.lines else { throw BenchmarkError("counted \(counted) lines, not \(input.lines)") }
        return Double(input.bytes) / 1_048_576 / time
    }
    let noPool = FileManager.default.isExecutableFile(atPath: paths.pool) ? nil : "build it first: swift build -c release"
    let noParallel = which("parallel") == nil ? "GNU parallel is not installed" : nil
    let pipeOptions = ["--block", "10M", "-j", String(workers), "wc", "-l"]

    // j: a private sshd, up while the scenario runs (its setUp and tearDown). The pools run
    // the shipped pool-worker (which serves Echo) on node1; the raw baseline is `ssh node1 cat`
    // over the same sshd, started once, so connecting is never timed on either side.
    let loopback = LoopbackSSH()
    let node1 = LoopbackSSH.hosts[0].name
    let message = String(repeating: "x", count: 64)
    let remotePayload = String(repeating: "x", count: sizes.payloadBytes)
    let remotePayloadMiB = Double(sizes.remotePayloadJobs * sizes.payloadBytes) / 1_048_576
    let slotsPerHost = 2
    let sleepLogins = LoopbackSSH.hosts.map { "\(slotsPerHost)/\($0.name)" }.joined(separator: ",")
    let idealSleepTime = Double(sizes.sleepJobs) * 0.05 / Double(slotsPerHost * LoopbackSSH.hosts.count)
    let remotePoolEcho = "pool Echo \(sizes.payloadBytes >> 20) MiB via ssh"
    let sshCatBandwidth = "ssh cat \(sizes.payloadBytes >> 20) MiB round trips"
    let remoteRun = "pool run -S \(sleepLogins)"
    let idealSleep = "ideal: \(sizes.sleepJobs) × 50 ms ÷ \(slotsPerHost * LoopbackSSH.hosts.count) slots"
    // A warm pool whose one worker runs on node1.
    func withRemotePool<T>(_ body: (ProcessPool) async throws -> T) async throws -> T {
        var configuration = ProcessPoolConfiguration(executablePath: paths.poolWorker)
        configuration.hosts = [.ssh(node1, slots: 1, command: loopback.sshCommand)]
        return try await withProcessPool(configuration: configuration) { pool in
            _ = try await pool.run(Echo.self, "warm")
            return try await body(pool)
        }
    }
    func withSSHCat<T>(_ body: (SSHCat) throws -> T) throws -> T {
        let cat = try SSHCat(sshCommand: loopback.sshCommand, host: node1)
        defer { cat.finish() }
        return try body(cat)
    }

    return [
        Scenario(
            id: "a", title: "tiny jobs (\(sizes.tinyJobs) Int→Int)",
            contenders: [
                Contender("pool.map", unit: "jobs/s", ours: true) {
                    try await withWarmPool { pool in
                        let time = try await timed {
                            let outputs = try await pool.map(Increment.self, 0..<sizes.tinyJobs)
                            guard outputs.count == sizes.tinyJobs, outputs.last == sizes.tinyJobs else { throw BenchmarkError("wrong outputs") }
                        }
                        return Double(sizes.tinyJobs) / time
                    }
                },
                Contender("Pool.map", unit: "jobs/s", unavailable: noPython) {
                    try python(py, paths, "a-pool-map", workers: workers, ["--jobs", String(sizes.tinyJobs)])
                },
                Contender("PPE.map chunksize=1", unit: "jobs/s", unavailable: noPython) {
                    try python(py, paths, "a-ppe-map-1", workers: workers, ["--jobs", String(sizes.tinyJobsChunksizeOne)])
                },
                Contender("PPE.map chunksize=1000", unit: "jobs/s", unavailable: noPython) {
                    try python(py, paths, "a-ppe-map-1000", workers: workers, ["--jobs", String(sizes.tinyJobs)])
                },
                Contender("in-process loop", unit: "jobs/s") {
                    let job = Increment()
                    var outputs: [Int] = []
                    let time = await timed { outputs = (0..<sizes.tinyJobs).map { job.run($0) } }
                    precondition(outputs.count == sizes.tinyJobs)
                    return Double(sizes.tinyJobs) / time
                },
            ],
            bars: [
                .ratio("pool.map", "Pool.map", atLeast: 2, "vs Pool.map"),
                .ratio("pool.map", "PPE.map chunksize=1", atLeast: 100, "vs PPE.map chunksize=1"),
                .ratio("pool.map", "PPE.map chunksize=1000", atLeast: 1, "vs PPE.map chunksize=1000"),
            ]),
        Scenario(
            id: "b", title: "futures (\(sizes.submits) submits in flight)",
            contenders: [
                Contender("pool.submit", unit: "jobs/s", ours: true) {
                    try await withWarmPool { pool in
                        try await Double(sizes.submits) / timed {
                            var futures: [JobFuture<Int>] = []
                            futures.reserveCapacity(sizes.submits)
                            for input in 0..<sizes.submits { futures.append(try await pool.submit(Increment.self, input)) }
                            for (input, future) in futures.enumerated() where try await future.value != input + 1 {
                                throw BenchmarkError("wrong output for \(input)")
                            }
                        }
                    }
                },
                Contender("PPE.submit", unit: "jobs/s", unavailable: noPython) {
                    try python(py, paths, "b-ppe-submit", workers: workers, ["--jobs", String(sizes.submits)])
                },
            ],
            bars: [.ratio("pool.submit", "PPE.submit", atLeast: 20, "vs PPE.submit")]),
        Scenario(
            id: "c", title: "latency (one job's round trip)",
            contenders: [
                Contender(["pool.run p50", "pool.run p99"], unit: "µs", ours: true) {
                    try await withWarmPool { pool in percentiles(try await roundTrips(pool, sizes.roundTrips)) }
                },
                Contender(["pool.run on eventLoopExecutor p50", "pool.run on eventLoopExecutor p99"], unit: "µs", ours: true) {
                    try await withWarmPool { pool in
                        try await withTaskExecutorPreference(pool.eventLoopExecutor) {
                            percentiles(try await roundTrips(pool, sizes.roundTrips))
                        }
                    }
                },
                Contender(["PPE p50", "PPE p99"], unit: "µs", unavailable: noPython) {
                    try pythonFigures(py, paths, "c-ppe-latency", workers: workers, ["--jobs", String(sizes.roundTrips)], fields: ["value", "p99_us"])
                },
                Contender(["raw pipe ping-pong p50", "raw pipe ping-pong p99"], unit: "µs") {
                    percentiles(try RawPipe.pingPong(roundTrips: sizes.roundTrips))
                },
                Contender(["raw ping-pong from a task p50", "raw ping-pong from a task p99"], unit: "µs") {
                    percentiles(try await RawPipe.asyncPingPong(roundTrips: sizes.roundTrips))
                },
            ],
            bars: [
                .ratio("pool.run p50", "PPE p50", atMost: 1.0 / 3, "p50 vs PPE"),
                .ratio("pool.run p50", "raw pipe ping-pong p50", atMost: 2, "p50 vs raw pipe"),
                .ratio("pool.run on eventLoopExecutor p50", "raw pipe ping-pong p50", atMost: 2, "p50 vs raw pipe, caller on the pool's executor"),
            ]),
        Scenario(
            id: "d", title: "CPU-bound (\(sizes.cpuJobs) jobs of ~5 ms)",
            contenders: [
                Contender("sequential", unit: "s") {
                    var sum: UInt64 = 0
                    let time = await timed { for seed in 0..<sizes.cpuJobs { sum &+= crunch(crunchRounds, seed: seed) } }
                    guard sum != 1 else { throw BenchmarkError("impossible checksum") }
                    return time
                },
                Contender("pool.map", unit: "s", ours: true) {
                    try await withWarmPool { pool in
                        try await timed { _ = try await pool.map(Crunch.self, (0..<sizes.cpuJobs).map { [crunchRounds, $0] }) }
                    }
                },
                Contender("TaskGroup", unit: "s") {
                    await timed {
                        await withTaskGroup(of: UInt64.self) { group in
                            for seed in 0..<sizes.cpuJobs { group.addTask { crunch(crunchRounds, seed: seed) } }
                            for await _ in group {}
                        }
                    }
                },
            ],
            bars: [.ratio("pool.map", "TaskGroup", atMost: 1 / 0.97, "time vs TaskGroup (≥ 97% of its speedup)")]),
        Scenario(
            id: "e", title: "payload (\(sizes.payloadJobs) × \(sizes.payloadBytes >> 20) MiB)",
            contenders: [
                Contender("pool in", unit: "MiB/s", ours: true) {
                    try await withWarmPool { pool in
                        try await payloadMiB / timed {
                            let counts = try await pool.map(Ingest.self, Array(repeating: payload, count: sizes.payloadJobs))
                            guard counts.allSatisfy({ $0 == sizes.payloadBytes }) else { throw BenchmarkError("wrong sizes") }
                        }
                    }
                },
                Contender("PPE in", unit: "MiB/s", unavailable: noPython) {
                    try python(py, paths, "e-ppe-payload-in", workers: workers, ["--jobs", String(sizes.payloadJobs), "--mib", String(sizes.payloadBytes >> 20)])
                },
                Contender("pool out", unit: "MiB/s", ours: true) {
                    try await withWarmPool { pool in
                        // Like the Python baseline, take the results one at a time and drop each,
                        // so the figure is the transfer, not the zeroing of 512 MiB of fresh memory.
                        try await payloadMiB / timed {
                            var received = 0
                            for try await (_, output) in pool.mapUnordered(Emit.self, Array(repeating: sizes.payloadBytes, count: sizes.payloadJobs)) {
                                guard output.count == sizes.payloadBytes else { throw BenchmarkError("wrong size") }
                                received += 1
                            }
                            guard received == sizes.payloadJobs else { throw BenchmarkError("missing results") }
                        }
                    }
                },
                Contender("PPE out", unit: "MiB/s", unavailable: noPython) {
                    try python(py, paths, "e-ppe-payload-out", workers: workers, ["--jobs", String(sizes.payloadJobs), "--mib", String(sizes.payloadBytes >> 20)])
                },
                Contender("raw pipe", unit: "MiB/s") {
                    try RawPipe.bandwidth(count: sizes.payloadJobs, size: sizes.payloadBytes)
                },
            ],
            bars: [
                .ratio("pool in", "PPE in", atLeast: 2, "in vs PPE"),
                .ratio("pool out", "PPE out", atLeast: 2, "out vs PPE"),
                .ratio("pool in", "raw pipe", atLeast: 0.6, "in vs raw pipe"),
                .ratio("pool out", "raw pipe", atLeast: 0.6, "out vs raw pipe"),
            ]),
        Scenario(
            id: "f", title: "start-up (pool created → first result)",
            contenders: [
                Contender("pool", unit: "ms", ours: true) {
                    try await timed {
                        try await withProcessPool(workers: workers, arguments: []) { pool in _ = try await pool.run(Increment.self, 0) }
                    } * 1000
                },
                Contender("PPE spawn", unit: "ms", unavailable: noPython) {
                    try python(py, paths, "f-ppe-startup-spawn", workers: workers)
                },
                Contender("PPE fork", unit: "ms", unavailable: noPython) {
                    try python(py, paths, "f-ppe-startup-fork", workers: workers)
                },
            ],
            bars: [.ratio("pool", "PPE spawn", atMost: 0.25, "vs PPE spawn")]),
        Scenario(
            id: "g", title: "command line (\(sizes.commandJobs) `true` jobs)",
            contenders: [
                Contender("pool run", unit: "jobs/s", ours: true,
                          unavailable: FileManager.default.isExecutableFile(atPath: paths.pool) ? nil : "build it first: swift build -c release") {
                    try await Double(sizes.commandJobs) / timed {
                        try runProgram(paths.pool, ["run", "-j", String(workers), "true"], standardInput: inputsFile)
                    }
                },
                Contender("xargs -P", unit: "jobs/s", unavailable: which("xargs") == nil ? "xargs is not installed" : nil) {
                    try await Double(sizes.commandJobs) / timed {
                        try runProgram(which("xargs")!, ["-P", String(workers), "-n1", "true"], standardInput: inputsFile)
                    }
                },
                Contender("GNU parallel", unit: "jobs/s", unavailable: which("parallel") == nil ? "GNU parallel is not installed" : nil) {
                    try await Double(sizes.commandJobs) / timed {
                        try runProgram(which("parallel")!, ["-j", String(workers), "true"], standardInput: inputsFile)
                    }
                },
            ],
            bars: [
                .ratio("pool run", "xargs -P", atLeast: 1, "vs xargs -P"),
                .ratio("pool run", "GNU parallel", atLeast: 4, "vs GNU parallel"),
            ]),
        Scenario(
            id: "h", title: "memory",
            contenders: [
                Contender("coordinator peak, lazy map", unit: "MiB", ours: true) {
                    let output = try runProgram(CommandLine.arguments[0], ["memory-map", String(sizes.lazyMapInputs), String(workers)])
                    guard let value = Double(output.trimmingCharacters(in: .whitespacesAndNewlines)) else { throw BenchmarkError("memory-map printed \(output)") }
                    return value
                },
                Contender("idle pool-worker", unit: "MiB", ours: true, unavailable: noPoolWorker) {
                    try await idleWorkerMiB(paths, field: "VmRSS")
                },
                Contender("trivial Swift program", unit: "MiB") {
                    try trivialProgramMiB(paths, field: "VmRSS")
                },
                Contender("idle pool-worker, private", unit: "MiB", ours: true, unavailable: noPoolWorker) {
                    try await idleWorkerMiB(paths, field: "RssAnon")
                },
                Contender("trivial Swift program, private", unit: "MiB") {
                    try trivialProgramMiB(paths, field: "RssAnon")
                },
            ],
            bars: [
                .value("coordinator peak, lazy map", atMost: 100, "coordinator peak (MiB)"),
                .ratio("idle pool-worker", "trivial Swift program", atMost: 1.5, "idle worker vs trivial program"),
                .ratio("idle pool-worker, private", "trivial Swift program, private", atMost: 1.5, "idle worker vs trivial, private memory"),
            ]),
        Scenario(
            id: "i", title: "--pipe (\(sizes.pipeBytes >> 20) MiB of numbered lines into wc -l)",
            contenders: [
                Contender("pool run --pipe", unit: "MiB/s", ours: true, unavailable: noPool) {
                    try await countLines(paths.pool, ["run", "--pipe"] + pipeOptions, fromStandardInput: true)
                },
                Contender("GNU --pipe", unit: "MiB/s", unavailable: noParallel) {
                    try await countLines(which("parallel")!, ["--pipe"] + pipeOptions, fromStandardInput: true)
                },
                Contender("pool run --pipepart", unit: "MiB/s", ours: true, unavailable: noPool) {
                    try await countLines(paths.pool, ["run", "--pipepart", "-a", pipeInputFile] + pipeOptions, fromStandardInput: false)
                },
                Contender("GNU --pipepart", unit: "MiB/s", unavailable: noParallel) {
                    try await countLines(which("parallel")!, ["--pipepart", "-a", pipeInputFile] + pipeOptions, fromStandardInput: false)
                },
                Contender("cat | wc -l", unit: "MiB/s") {
                    try await countLines("/bin/sh", ["-c", "cat \"$0\" | wc -l", pipeInputFile], fromStandardInput: false)
                },
            ],
            bars: [
                .ratio("pool run --pipe", "GNU --pipe", atLeast: 2, "--pipe vs GNU --pipe"),
                .ratio("pool run --pipepart", "cat | wc -l", atLeast: 1.3, "--pipepart vs cat | wc -l"),
            ]),
        Scenario(
            id: "j", title: "remote hosts over ssh (a private sshd on 127.0.0.1 and 127.0.0.2)",
            contenders: [
                Contender(["pool.run 64 B via ssh p50", "pool.run 64 B via ssh p99"], unit: "µs", ours: true, unavailable: noPoolWorker) {
                    try await withRemotePool { pool in
                        percentiles(
                            try await roundTrips(sizes.roundTrips) { _ in
                                guard try await pool.run(Echo.self, message) == message else { throw BenchmarkError("wrong echo") }
                            })
                    }
                },
                Contender(["pool.run 64 B via ssh on eventLoopExecutor p50", "pool.run 64 B via ssh on eventLoopExecutor p99"], unit: "µs", ours: true, unavailable: noPoolWorker) {
                    // The caller on the pool's own thread: no hand-off between threads at either end.
                    try await withRemotePool { pool in
                        try await withTaskExecutorPreference(pool.eventLoopExecutor) {
                            percentiles(
                                try await roundTrips(sizes.roundTrips) { _ in
                                    guard try await pool.run(Echo.self, message) == message else { throw BenchmarkError("wrong echo") }
                                })
                        }
                    }
                },
                Contender(["ssh cat 64 B p50", "ssh cat 64 B p99"], unit: "µs") {
                    try withSSHCat { percentiles(try $0.roundTrips(size: 64, count: sizes.roundTrips)) }
                },
                Contender(remotePoolEcho, unit: "MiB/s", ours: true, unavailable: noPoolWorker) {
                    try await withRemotePool { pool in
                        // One untimed payload first, as the raw baseline sends one untimed block:
                        // buffers along the way grow to the payload's size once.
                        _ = try await pool.run(Echo.self, remotePayload)
                        return try await remotePayloadMiB / timed {
                            let outputs = try await pool.map(Echo.self, Array(repeating: remotePayload, count: sizes.remotePayloadJobs))
                            guard outputs.count == sizes.remotePayloadJobs, outputs.allSatisfy({ $0.utf8.count == sizes.payloadBytes }) else {
                                throw BenchmarkError("wrong echoes")
                            }
                        }
                    }
                },
                Contender(sshCatBandwidth, unit: "MiB/s") {
                    try withSSHCat { try $0.bandwidth(count: sizes.remotePayloadJobs, size: sizes.payloadBytes) }
                },
                Contender(remoteRun, unit: "s", ours: true, unavailable: noPool) {
                    // `sleep ::: 0.05 …`: each input is the job's one argument (`sleep 0.05 ::: 1 …`
                    // would run `sleep 0.05 1`, which sleeps 1.05 s).
                    try await timed {
                        try runProgram(
                            paths.pool,
                            ["run", "-S", sleepLogins, "--ssh", loopback.sshCommand.joined(separator: " "), "sleep", ":::"]
                                + Array(repeating: "0.05", count: sizes.sleepJobs))
                    }
                },
                Contender(idealSleep, unit: "s") { idealSleepTime },
            ],
            bars: [
                .ratio("pool.run 64 B via ssh p50", "ssh cat 64 B p50", atMost: 1.5, "p50 vs raw ssh cat"),
                .ratio("pool.run 64 B via ssh on eventLoopExecutor p50", "ssh cat 64 B p50", atMost: 1.5, "p50 vs raw ssh cat, caller on the pool's executor"),
                .ratio(remotePoolEcho, sshCatBandwidth, atLeast: 0.7, "payload vs raw ssh cat"),
                .ratio(remoteRun, idealSleep, atMost: 1.1, "sleep jobs on 2 hosts vs ideal"),
            ],
            setUp: { try loopback.start() },
            tearDown: { loopback.stop() }),
    ]
}

/// An idle `pool-worker`'s memory, after one job.
func idleWorkerMiB(_ paths: Paths, field: String) async throws -> Double {
    let configuration = ProcessPoolConfiguration(workerCount: 1, executablePath: paths.poolWorker)
    return try await withProcessPool(configuration: configuration) { pool in
        _ = try await pool.run(Echo.self, "warm")
        guard let pid = pool.workerProcessIDs.first, let resident = residentMiB(of: pid, field: field) else { throw BenchmarkError("no worker to measure") }
        return resident
    }
}

/// The memory of the smallest Swift program that stays alive (the `trivial` target).
func trivialProgramMiB(_ paths: Paths, field: String) throws -> Double {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: paths.trivial)
    let input = Pipe()
    let output = Pipe()
    process.standardInput = input
    process.standardOutput = output
    try process.run()
    _ = output.fileHandleForReading.availableData  // "ready"
    let resident = residentMiB(of: process.processIdentifier, field: field)
    try input.fileHandleForWriting.close()
    process.waitUntilExit()
    guard let resident else { throw BenchmarkError("cannot read the trivial program's memory") }
    return resident
}

/// `bench memory-map N W`: a lazy map over N inputs in this process, then its peak resident
/// memory in MiB on stdout.
func memoryMap(inputs: Int, workers: Int) async throws -> Never {
    var total = 0
    try await withProcessPool(workers: workers, arguments: []) { pool in
        for try await (_, output) in pool.mapUnordered(Increment.self, (0..<inputs).lazy.map { $0 }) {
            total &+= output
        }
    }
    // VmHWM, not getrusage: Linux carries ru_maxrss over from the parent across the spawn,
    // and the parent (this suite) may have held far more.
    guard let peak = residentMiB(of: getpid(), field: "VmHWM") else { exit(1) }
    print(String(format: "%.1f", peak))
    exit(total == (inputs * (inputs + 1)) / 2 ? 0 : 1)
}
