import Foundation
import Multiprocessing

/// n → n², the tiny job of the throughput and ordering tests.
struct Square: Job {
    static let name = "square"
    func run(_ n: Int) -> Int { n &* n }
}

/// Ways for a job to go wrong, one per test.
enum Misbehaviour: Codable, Sendable {
    case succeed(Int)
    case throwError(String)
    case fatalError(String)
    case abort
    case exit(Int32)
    case killSelf(Int32)
    case segfault
    /// Writes a byte to the named pipe at `path` (so a test knows the job is running), then
    /// sleeps.
    case signalThenSleep(fifo: String, milliseconds: Int)
    /// Ignores SIGTERM, then sleeps: only SIGKILL stops it.
    case ignoreTerminationAndSleep(milliseconds: Int)
    /// Crashes unless the file at `path` exists, creating it first: fails once, then succeeds.
    case crashOnce(marker: String)
    /// Allocates and touches this many MiB, then frees them.
    case allocate(megabytes: Int)
    /// Allocates this many MiB and keeps them for the life of the worker: a leak.
    case leak(megabytes: Int)
    case printToStandardOutput(lines: Int, value: Int)
    case writeToStandardError(String, thenAbort: Bool)
}

struct FixtureError: Error, CustomStringConvertible {
    var reason: String
    var description: String { "fixture refused: \(reason)" }
}

/// What `.leak` keeps; touched only by the worker's one job loop.
enum Leaks {
    nonisolated(unsafe) static var kept: [[UInt8]] = []
}

struct Misbehave: Job {
    static let name = "misbehave"

    func run(_ action: Misbehaviour) throws -> Int {
        switch action {
        case .succeed(let value):
            return value
        case .throwError(let reason):
            throw FixtureError(reason: reason)
        case .fatalError(let message):
            Swift.fatalError(message)
        case .abort:
            Foundation.abort()
        case .exit(let status):
            Foundation.exit(status)
        case .killSelf(let signal):
            kill(getpid(), signal)
            Thread.sleep(forTimeInterval: 10)
            return -1
        case .segfault:
            // A real invalid access, as a buggy C library would make.
            UnsafeMutablePointer<Int>(bitPattern: 16)!.pointee = 1
            return -1
        case .signalThenSleep(let fifo, let milliseconds):
            let descriptor = open(fifo, O_WRONLY)
            var byte: UInt8 = 1
            _ = write(descriptor, &byte, 1)
            close(descriptor)
            Thread.sleep(forTimeInterval: Double(milliseconds) / 1000)
            return milliseconds
        case .ignoreTerminationAndSleep(let milliseconds):
            signal(SIGTERM, SIG_IGN)
            Thread.sleep(forTimeInterval: Double(milliseconds) / 1000)
            return milliseconds
        case .crashOnce(let marker):
            if FileManager.default.fileExists(atPath: marker) { return 1 }
            _ = FileManager.default.createFile(atPath: marker, contents: nil)
            Foundation.abort()
        case .allocate(let megabytes):
            let bytes = [UInt8](repeating: 1, count: megabytes << 20)
            return bytes.count >> 20
        case .leak(let megabytes):
            Leaks.kept.append([UInt8](repeating: 1, count: megabytes << 20))
            return Leaks.kept.count
        case .printToStandardOutput(let lines, let value):
            for line in 0..<lines { print("noise \(line) that must not reach the protocol \u{0}\u{1}SWMP") }
            FileHandle.standardOutput.write(Data([0x53, 0x57, 0x4D, 0x50, 0xFF, 0xFF, 0xFF, 0x7F]))
            return value
        case .writeToStandardError(let message, let thenAbort):
            FileHandle.standardError.write(Data((message + "\n").utf8))
            if thenAbort { Foundation.abort() }
            return 0
        }
    }
}

/// Sleeps for the given milliseconds and returns the worker's pid.
struct SleepThenReportProcessID: Job {
    static let name = "sleep-pid"
    func run(_ milliseconds: Int) async throws -> Int32 {
        try await Task.sleep(for: .milliseconds(milliseconds))
        return getpid()
    }
}

/// Counts how many times this worker's instance has run: proves one instance per process.
final class CountCalls: Job {
    static let name = "count-calls"
    private var calls = 0
    init() {}
    func run(_ input: Int) -> [Int32] {
        calls += 1
        return [getpid(), Int32(calls)]
    }
}

/// A nested input with every kind of field, to carry the codec through real processes.
struct Record: Codable, Sendable, Equatable {
    var id: Int
    var name: String
    var tags: [String]
    var scores: [Double]
    var blob: Data
    var parent: Int?
    var attributes: [String: Int]
}

struct TransformRecord: Job {
    static let name = "transform-record"
    func run(_ record: Record) -> Record {
        var copy = record
        copy.id += 1
        copy.name = copy.name.uppercased()
        copy.tags.append("seen")
        copy.scores = copy.scores.map { $0 * 2 }
        copy.blob = Data(copy.blob.reversed())
        copy.attributes["count", default: 0] += 1
        return copy
    }
}

/// Spins for the given microseconds of CPU, then returns the square of `value`: a job slow
/// enough for a chaos test to kill workers in the middle of batches.
struct Spin: Job {
    static let name = "spin"
    func run(_ input: [Int]) -> Int {
        let (value, microseconds) = (input[0], input[1])
        let clock = ContinuousClock()
        let end = clock.now + .microseconds(microseconds)
        var counter = 0
        while clock.now < end { counter &+= 1 }
        return value &* value &+ (counter & 0)
    }
}

/// ``Spin``, first appending the job's index as a line to a file every worker can write (the
/// test's hosts share this machine's file system): the file counts how often each job started,
/// so a test can tell reruns from jobs that ran once.
struct LoggedSpin: Job {
    static let name = "logged-spin"
    struct Input: Codable, Sendable {
        let value: Int
        let microseconds: Int
        let log: String
    }
    func run(_ input: Input) -> Int {
        let descriptor = open(input.log, O_WRONLY | O_APPEND | O_CREAT, 0o644)
        if descriptor >= 0 {
            // One write of a short line with O_APPEND: lines from many workers never interleave.
            let line = Array("\(input.value)\n".utf8)
            _ = line.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
            close(descriptor)
        }
        return Spin().run([input.value, input.microseconds])
    }
}

/// Returns `n` bytes: an output as large as asked.
struct MakeBytes: Job {
    static let name = "make-bytes"
    func run(_ count: Int) -> [UInt8] { [UInt8](repeating: 0xAB, count: count) }
}

/// Returns the input's length: an input as large as the caller makes it.
struct CountBytes: Job {
    static let name = "count-bytes"
    func run(_ bytes: [UInt8]) -> Int { bytes.count }
}

/// FNV-1a of the bytes: shows that every byte arrived, in order.
struct Checksum: Job {
    static let name = "checksum"
    func run(_ bytes: [UInt8]) -> UInt64 { fnv1a(bytes) }
}

/// `count` bytes from SplitMix64 seeded with `seed`: an output whose every byte can be checked.
struct RandomBytes: Job {
    static let name = "random-bytes"
    struct Request: Codable, Sendable {
        var seed: UInt64
        var count: Int
    }
    func run(_ request: Request) -> [UInt8] { randomBytes(seed: request.seed, count: request.count) }
}

func randomBytes(seed: UInt64, count: Int) -> [UInt8] {
    var generator = SplitMix64(seed: seed)
    return (0..<count).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
}

func fnv1a(_ bytes: [UInt8]) -> UInt64 {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in bytes {
        hash ^= UInt64(byte)
        hash &*= 0x100_0000_01b3
    }
    return hash
}

var fixtureJobs: [any Job.Type] { [Square.self, Misbehave.self, SleepThenReportProcessID.self, CountCalls.self, TransformRecord.self, MakeBytes.self, CountBytes.self, Spin.self, LoggedSpin.self, Checksum.self, RandomBytes.self] }
