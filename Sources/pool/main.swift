import Foundation
import Multiprocessing

/// A command-line mistake: one line naming it, exit status 2.
struct UsageError: Error {
    let message: String
    init(_ message: String) { self.message = message }
}

/// A file the run needs that cannot be written: the path, and the system's reason.
struct FileError: Error, CustomStringConvertible {
    let description: String

    /// `what` (such as "write the job log") failed on `path` with the current `errno`.
    init(_ what: String, _ path: String, errno code: Int32 = errno) {
        description = "cannot \(what) \(path): \(String(cString: strerror(code)))"
    }
}

enum Output {
    static func write(_ text: String, to handle: FileHandle) { write(Data(text.utf8), to: handle) }
    static func write(_ data: Data, to handle: FileHandle) {
        guard !data.isEmpty else { return }
        handle.write(data)
    }
}

/// Writes all of `contents` to `descriptor`; false (with `errno` set) if a write fails.
func writeWhole(_ contents: Data, to descriptor: Int32) -> Bool {
    contents.withUnsafeBytes { (bytes: UnsafeRawBufferPointer) -> Bool in
        var offset = 0
        while offset < bytes.count {
            let written = write(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
            if written < 0 {
                if errno == EINTR { continue }
                return false
            }
            offset += written
        }
        return true
    }
}

/// The worker binary: `--worker`, or `pool-worker` next to this executable.
func workerExecutable(_ explicit: String?) throws -> String {
    if let explicit { return explicit }
    let me = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    return URL(fileURLWithPath: me).deletingLastPathComponent().appendingPathComponent("pool-worker").path
}

/// Says on stderr when the pool runs fewer workers than asked for: a limit on processes or
/// descriptors let it start only some of them (see ``ProcessPool/capacityShortfall``).
func reportCapacity(of pool: ProcessPool) {
    guard let shortfall = pool.capacityShortfall else { return }
    Output.write("pool: running \(pool.workerCapacity) workers, not \(pool.configuration.workerCount): \(shortfall)\n", to: .standardError)
}

/// Exits with a message naming the limit if this process cannot start `count` threads at once.
///
/// Swift's concurrency runtime does not fail when it cannot start a thread: it waits and tries
/// again, forever. Under a very low process limit (`RLIMIT_NPROC`) `pool` would hang before it
/// could say anything; this finds out first, with threads that start, wait and end at once.
func requireThreads(_ count: Int) {
    var gate: [Int32] = [0, 0]
    guard pipe(&gate) == 0 else { return }
    var threads: [pthread_t] = []
    var failure: Int32 = 0
    for _ in 0..<count {
        var thread = pthread_t()
        let readEnd = UnsafeMutableRawPointer(bitPattern: Int(gate[0]) + 1)
        let result = pthread_create(&thread, nil, { context in
            // Waits until the gate's write end closes.
            var byte: UInt8 = 0
            _ = read(Int32(Int(bitPattern: context) - 1), &byte, 1)
            return nil
        }, readEnd)
        if result != 0 {
            failure = result
            break
        }
        threads.append(thread)
    }
    close(gate[1])
    for thread in threads { pthread_join(thread, nil) }
    close(gate[0])
    guard failure != 0 else { return }
    let limit = resourceLimitNote(call: "pthread_create", errno: failure).map { "; the limit \($0)" } ?? ""
    Output.write("pool: cannot start threads: pthread_create failed: \(String(cString: strerror(failure)))\(limit)\n", to: .standardError)
    exit(255)
}

// Room for the runtime's first threads (measured: four is enough to fail cleanly later rather than hang).
requireThreads(4)

let version = "pool 0.1.0 (swift-multiprocessing, protocol 1)"
let arguments = Array(CommandLine.arguments.dropFirst())
/// The arguments as the kernel passed them, byte for byte: `CommandLine.arguments` replaces
/// bytes that are not UTF-8 with U+FFFD, which would change a file name given to `pool run`.
let argumentBytes: [Bytes] = (1..<Int(CommandLine.argc)).map { index in
    guard let argument = CommandLine.unsafeArgv[index] else { return [] }
    return Array(UnsafeRawBufferPointer(start: argument, count: strlen(argument)))
}

do {
    switch arguments.first {
    case nil, "-h", "--help":
        Output.write(Help.overview, to: .standardOutput)
    case "help" where arguments.count == 1:
        Output.write(Help.overview, to: .standardOutput)
    case "--version", "-V":
        Output.write(version + "\n", to: .standardOutput)
    case "help":
        switch arguments[1] {
        case "run": Output.write(Help.run, to: .standardOutput)
        case "jobs": Output.write(Help.jobs, to: .standardOutput)
        case "map": Output.write(Help.map, to: .standardOutput)
        default: throw UsageError("no help for '\(arguments[1])': commands are run, map, jobs")
        }
    case "run":
        if arguments.dropFirst().first.map({ ["-h", "--help"].contains($0) }) == true {
            Output.write(Help.run, to: .standardOutput)
        } else {
            let command = try RunCommand(arguments: Array(argumentBytes.dropFirst()))
            let run = Task { try await command.run() }
            Interrupt.shared.install { run.cancel() }
            let status: Int32
            do {
                status = try await run.value
            } catch is CancellationError {
                status = 128 + (Interrupt.shared.signal ?? SIGINT)
            }
            exit(status)
        }
    case "map":
        if arguments.dropFirst().first.map({ ["-h", "--help"].contains($0) }) == true {
            Output.write(Help.map, to: .standardOutput)
        } else {
            let command = try MapCommand(arguments: Array(arguments.dropFirst()))
            exit(try await command.run())
        }
    case "jobs":
        if arguments.dropFirst().first.map({ ["-h", "--help"].contains($0) }) == true {
            Output.write(Help.jobs, to: .standardOutput)
        } else {
            var rest = arguments.dropFirst()
            var worker: String?
            while let argument = rest.popFirst() {
                guard argument == "--worker", let path = rest.popFirst() else { throw UsageError("unknown argument '\(argument)' (usage: pool jobs --worker PATH)") }
                worker = path
            }
            let path = try workerExecutable(worker)
            let names = try await withProcessPool(workers: 1, executable: path) { pool in try await pool.servedJobNames() }
            Output.write(names.map { $0 + "\n" }.joined(), to: .standardOutput)
        }
    default:
        throw UsageError("unknown command '\(arguments[0])' (commands: run, map, jobs; see 'pool --help')")
    }
} catch let error as UsageError {
    Output.write("pool: \(error.message)\n", to: .standardError)
    exit(2)
} catch {
    Output.write("pool: \(error)\n", to: .standardError)
    exit(255)
}
