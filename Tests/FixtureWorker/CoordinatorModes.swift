import Foundation
import Multiprocessing

/// Starts a pool of two workers in the middle of a busy `map` (CPU-bound jobs, batches queued),
/// prints `workers PID PID` and carries on, so a test can SIGKILL this coordinator mid-map and
/// check that the workers die with it.
func coordinateAndWait() async throws {
    try await withProcessPool(workers: 2, arguments: []) { pool in
        // One round trip each, so both workers are past their start-up.
        _ = try await pool.map(SleepThenReportProcessID.self, [0, 0])
        let pids = pool.workerProcessIDs
        FileHandle.standardOutput.write(Data(("workers " + pids.map(String.init).joined(separator: " ") + "\n").utf8))
        _ = try await pool.map(Spin.self, (0..<100_000).map { [$0, 2_000] })
    }
}

/// Runs a pool through success, a crash and shutdown, then prints one line of facts about
/// this process for the test to check: open descriptors before and after, whether any child
/// process (or zombie) remains, and whether the workers' pids are gone.
func lifecycleReport() async throws {
    // A first pool warms up what the runtime creates once per process (Dispatch's epoll and
    // timer descriptors), so the count below measures only what a pool's lifetime leaves.
    try await withProcessPool(workers: 1, arguments: []) { pool in _ = try await pool.run(Square.self, 1) }
    let before = openDescriptors()
    var workerPIDs: [Int32] = []
    try await withProcessPool(workers: 2, arguments: []) { pool in
        _ = try await pool.map(Square.self, 0..<1000)
        _ = try? await pool.run(Misbehave.self, .abort)
        _ = try await pool.map(Square.self, 0..<1000)
        workerPIDs = pool.workerProcessIDs
    }
    let after = openDescriptors()
    errno = 0
    let waitResult = waitpid(-1, nil, WNOHANG)
    let noChildren = waitResult == -1 && errno == ECHILD
    let workersGone = workerPIDs.allSatisfy { kill($0, 0) == -1 && errno == ESRCH }
    let leaked = after.subtracting(before).sorted().map { "\($0)=\(describeDescriptor($0))" }.joined(separator: ",")
    print("descriptors-before \(before.count) descriptors-after \(after.count) leaked [\(leaked)] no-children \(noChildren) workers-gone \(workersGone) workers \(workerPIDs.count)")
}

/// The numbers of this process's open descriptors, less the listing's own and those Dispatch
/// creates lazily for its timers and event queue (the library creates neither kind; counting
/// them would make the check depend on when Dispatch first needed a second timer).
func openDescriptors() -> Set<Int> {
    let names = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []).compactMap { Int($0) }
    return Set(names.filter { descriptor in
        let target = describeDescriptor(descriptor)
        return target != "?" && target != "anon_inode:[timerfd]" && target != "anon_inode:[eventpoll]"
    })
}

func describeDescriptor(_ descriptor: Int) -> String {
    (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(descriptor)")) ?? "?"
}

/// Lowers this process's descriptor limit to 64, asks for a pool of 200 workers, runs a map on
/// it, and prints `capacity N sum S` and the pool's ``ProcessPool/capacityShortfall`` on a
/// second line.
func capacityReport() async throws {
    var limit = rlimit(rlim_cur: 64, rlim_max: 64)
    guard setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 else { fatalError("setrlimit failed") }
    try await withProcessPool(workers: 200, arguments: []) { pool in
        let squares = try await pool.map(Square.self, 0..<100)
        print("capacity \(pool.workerCapacity) sum \(squares.reduce(0, +))")
        print(pool.capacityShortfall.map(String.init(describing:)) ?? "no shortfall")
    }
}

/// Like ``coordinateAndWait()``, with its two workers on the host `sshCommand` reaches
/// (`ssh -F CONFIG` and the host's name last): prints `ready` once both have answered, and
/// carries on with a busy map, so a test can SIGKILL this coordinator and check that nothing
/// it started on the host outlives it.
func coordinateRemotelyAndWait(sshCommand: [String]) async throws {
    var configuration = ProcessPoolConfiguration(arguments: [])
    configuration.hosts = [.ssh(sshCommand.last!, slots: 2, command: Array(sshCommand.dropLast()))]
    configuration.forwardsWorkerStandardError = false
    try await withProcessPool(configuration: configuration) { pool in
        _ = try await pool.map(Square.self, 0..<1_000)
        FileHandle.standardOutput.write(Data("ready\n".utf8))
        _ = try await pool.map(Spin.self, (0..<100_000).map { [$0, 2_000] })
    }
}

/// Runs a map on the nodes of the Slurm allocation it runs in (through the library's own
/// reading of Slurm's environment) and prints `results N correct B hosts H`.
func mapInAllocation() async throws {
    var configuration = ProcessPoolConfiguration(arguments: [])
    configuration.hosts = try WorkerHost.slurmAllocation()
    configuration.forwardsWorkerStandardError = false
    let results = try await withProcessPool(configuration: configuration) { pool in
        try await pool.map(Square.self, 0..<10_000)
    }
    let correct = results == (0..<10_000).map { $0 * $0 }
    print("results \(results.count) correct \(correct) hosts \(configuration.hosts.map { "\($0)/\($0.slots)" }.joined(separator: ","))")
}
