import CMultiprocessingShims
@testable import fixture_worker
import Foundation
import Multiprocessing
import Testing

/// Where the test bundle's sibling executables (fixture-worker, pool-worker) are built.
enum Binaries {
    static let directory: String = {
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: executable).deletingLastPathComponent().path
    }()

    static var fixtureWorker: String { directory + "/fixture-worker" }
    static var poolWorker: String { directory + "/pool-worker" }
}

/// Runs `body` with a pool of fixture workers.
func withFixturePool<Value>(
    workers: Int = 2,
    configure: (inout ProcessPoolConfiguration) -> Void = { _ in },
    isolation: isolated (any Actor)? = #isolation,
    _ body: (ProcessPool) async throws -> Value
) async throws -> Value {
    var configuration = ProcessPoolConfiguration(workerCount: workers, executablePath: Binaries.fixtureWorker)
    // The crash tests make workers print backtraces; keep the test log readable.
    configuration.forwardsWorkerStandardError = false
    configure(&configuration)
    return try await withProcessPool(configuration: configuration, isolation: isolation, body)
}

/// Whether a process with this pid exists (a zombie counts as existing).
func processExists(_ pid: Int32) -> Bool {
    kill(pid, 0) == 0 || errno != ESRCH
}

/// Waits, without polling, until the process `pid` has exited or `timeout` has passed; true if
/// it exited. Uses a pidfd, which works for processes that are not our children.
func waitForExit(of pid: Int32, timeout: Duration) -> Bool {
    let descriptor = mp_pidfd_open(pid)
    if descriptor < 0 { return errno == ESRCH }  // already gone
    defer { close(descriptor) }
    var entry = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
    let milliseconds = Int32(timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
    return poll(&entry, 1, milliseconds) == 1
}

// The fixture worker's own job types (Square, Misbehave, …) come from its module, so the
// tests and the worker cannot drift apart.

struct NotServed: Job {
    static let name = "not-served"
    func run(_ n: Int) -> Int { n }
}

struct Echo: Job {
    static let name = "echo"
    func run(_ text: String) -> String { text }
}

/// A named pipe a job writes one byte to when it starts, so a test can wait for "the job is
/// running" as an event rather than guess with a sleep.
struct StartSignal {
    let path: String

    init() throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("job-started-\(UUID().uuidString)").path
        guard mkfifo(path, 0o600) == 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
    }

    /// Waits, on a thread of its own (never the cooperative pool), for the job's byte.
    func wait() async {
        let path = path
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let thread = Thread {
                let descriptor = open(path, O_RDONLY)
                var byte: UInt8 = 0
                _ = read(descriptor, &byte, 1)
                close(descriptor)
                continuation.resume()
            }
            thread.start()
        }
    }

    func remove() { unlink(path) }
}

/// Waits on a thread of its own (never the cooperative pool) for process `pid` to exit, up to
/// `timeout`; true if it exited.
func awaitExit(of pid: Int32, timeout: Duration) async -> Bool {
    await withCheckedContinuation { continuation in
        let thread = Thread { continuation.resume(returning: waitForExit(of: pid, timeout: timeout)) }
        thread.start()
    }
}

/// Runs `body` on a thread of its own and awaits its result, so a test that must block (on a
/// child process, a pipe) never holds one of the cooperative pool's few threads.
func onDedicatedThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread { continuation.resume(with: Result { try body() }) }
        thread.start()
    }
}

/// Runs the fixture binary with `arguments` to completion and returns its exit status and
/// standard output (its stderr is discarded).
func runFixtureProcess(_ arguments: [String]) async throws -> (status: Int32, output: String) {
    try await onDedicatedThread {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Binaries.fixtureWorker)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
    }
}

/// Like `runFixtureProcess`, but also returns what the process wrote to stderr.
func runFixtureProcessCapturingErrors(_ arguments: [String]) async throws -> (status: Int32, output: String, errors: String) {
    try await onDedicatedThread {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Binaries.fixtureWorker)
        process.arguments = arguments
        let output = Pipe()
        let errorFile = FileManager.default.temporaryDirectory.appendingPathComponent("fixture-stderr-\(UUID().uuidString)")
        _ = FileManager.default.createFile(atPath: errorFile.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: errorFile) }
        let errorHandle = try FileHandle(forWritingTo: errorFile)
        process.standardOutput = output
        process.standardError = errorHandle
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        try errorHandle.close()
        let errors = (try? String(contentsOf: errorFile, encoding: .utf8)) ?? ""
        return (process.terminationStatus, String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines), errors)
    }
}
