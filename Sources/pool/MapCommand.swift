import Foundation
import Multiprocessing

/// `pool map --worker PATH --job NAME [-j N] [-k]`: JSON Lines in, JSON Lines out.
///
/// Each input line is one job input. Each output line is `{"line":N,"output":…}` or
/// `{"line":N,"error":{"code":…,"message":…}}`, N being the input's line number. A line that
/// is not JSON, or that the worker cannot decode as the job's input, gets an error record;
/// every other line is processed.
struct MapCommand {
    var workerPath: String?
    var jobName: String?
    var jobs = ProcessInfo.processInfo.activeProcessorCount
    var keepOrder = false
    var timeout: Duration?
    /// `-S`, `--slf`, `--ssh`, `--slurm`: other machines to run on.
    var hostOptions = HostOptions()

    init(arguments: [String]) throws(UsageError) {
        var rest = arguments[...]
        func value(for option: String) throws(UsageError) -> String {
            guard let value = rest.popFirst() else { throw UsageError("option \(option) needs a value") }
            return value
        }
        while let argument = rest.popFirst() {
            if try hostOptions.parse(argument, value: { () throws(UsageError) in try value(for: argument) }) { continue }
            switch argument {
            case "--worker": workerPath = try value(for: argument)
            case "--job": jobName = try value(for: argument)
            case "-j", "--jobs": jobs = try RunCommand.parseJobs(try value(for: argument))
            case "-k", "--keep-order": keepOrder = true
            case "--timeout": timeout = try RunCommand.parseTimeout(try value(for: argument))
            default:
                if argument.hasPrefix("-j"), argument.count > 2 {
                    jobs = try RunCommand.parseJobs(String(argument.dropFirst(2)))
                } else {
                    throw UsageError("unknown argument '\(argument)' (see 'pool help map')")
                }
            }
        }
        guard jobName != nil else { throw UsageError("pool map needs --job NAME (see 'pool jobs --worker PATH')") }
    }

    private struct ErrorBody: Encodable {
        var code: String
        var message: String
        /// The pid of the worker that reported or caused the error, when one did.
        var worker: Int32?
    }

    /// Runs every line; returns the exit status (failed lines, at most 101).
    func run() async throws -> Int32 {
        guard let jobName else { return 2 }
        var configuration = ProcessPoolConfiguration(workerCount: jobs, executablePath: try workerExecutable(workerPath))
        configuration.jobTimeout = timeout
        if hostOptions.namesHosts {
            configuration.hosts = try hostOptions.hosts(slots: jobs)
            configuration.hostEventHandler = HostOptions.reportEvents
        }
        let printer = LinePrinter(keepOrder: keepOrder)
        try await withProcessPool(configuration: configuration) { pool in
            reportCapacity(of: pool)
            let served = try await pool.servedJobNames()
            guard served.contains(jobName) else {
                throw UsageError("the worker serves no job named '\(jobName)'; it serves: \(served.joined(separator: ", "))")
            }
            let window = max(64, jobs * 64)
            try await withThrowingTaskGroup(of: (Int, Data, Bool).self) { group in
                var running = 0
                // A line longer than a frame could never be sent: it is dropped as it is read,
                // rather than held, and becomes an error record.
                let longestLine = configuration.maximumFrameSize
                var lines = InputRecords(separator: Array("\n".utf8), maximumLength: longestLine)
                var index = -1
                while let line = lines.next() {
                    index += 1
                    let lineNumber = index + 1
                    if running >= window, let (sequence, record, failed) = try await group.next() {
                        running -= 1
                        printer.print(sequence: sequence, record: record, failed: failed)
                    }
                    guard case .complete(let bytes) = line else {
                        guard case .tooLong(let length) = line else { continue }
                        let message = "the line is \(length) bytes; a job's input may be at most \(longestLine) (the pool's frame size limit)"
                        printer.print(sequence: index, record: Self.error(line: lineNumber, code: "lineTooLong", message: message), failed: true)
                        continue
                    }
                    if let problem = Self.jsonProblem(bytes) {
                        printer.print(sequence: index, record: Self.error(line: lineNumber, code: "invalidJSON", message: problem), failed: true)
                        continue
                    }
                    let future: JobFuture<[UInt8]>
                    do {
                        future = try await pool.submit(jobName: jobName, json: bytes)
                    } catch let error as ProcessPoolError where error.code != .poolShutDown {
                        // This line alone cannot be sent (larger than a frame): the others go on.
                        printer.print(sequence: index, record: Self.error(line: lineNumber, code: "\(error.code)", message: error.message), failed: true)
                        continue
                    }
                    running += 1
                    let sequence = index
                    group.addTask {
                        do {
                            let output = try await future.value
                            var record = Data("{\"line\":\(lineNumber),\"output\":".utf8)
                            record.append(contentsOf: output)
                            record.append(contentsOf: Array("}\n".utf8))
                            return (sequence, record, false)
                        } catch let error as ProcessPoolError {
                            return (sequence, Self.error(line: lineNumber, code: "\(error.code)", message: error.message, worker: error.workerProcessID), true)
                        }
                    }
                }
                while let (sequence, record, failed) = try await group.next() {
                    printer.print(sequence: sequence, record: record, failed: failed)
                }
            }
        }
        return Int32(min(printer.failures, 101))
    }

    /// Why `bytes` is not one JSON value, or nil if it is.
    static func jsonProblem(_ bytes: [UInt8]) -> String? {
        guard bytes.contains(where: { $0 != UInt8(ascii: " ") && $0 != UInt8(ascii: "\t") && $0 != UInt8(ascii: "\r") }) else {
            return "the line is empty"
        }
        // JSON is UTF-8 (RFC 8259): a line that is not is refused, never silently repaired.
        if let offset = firstInvalidUTF8(in: bytes) {
            return "the line is not valid UTF-8 (byte 0x\(String(bytes[offset], radix: 16)) at offset \(offset))"
        }
        do {
            _ = try JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed])
            return nil
        } catch {
            let described = (error as NSError).userInfo[NSDebugDescriptionErrorKey] as? String
            return "not valid JSON" + (described.map { ": \($0)" } ?? "")
        }
    }

    /// Where the first byte that is not part of valid UTF-8 is, if there is one.
    static func firstInvalidUTF8(in bytes: [UInt8]) -> Int? {
        var parser = Unicode.UTF8.ForwardParser()
        var iterator = bytes.makeIterator()
        var offset = 0
        while true {
            switch parser.parseScalar(from: &iterator) {
            case .valid(let scalar): offset += scalar.count
            case .emptyInput: return nil
            case .error: return offset
            }
        }
    }

    static func error(line: Int, code: String, message: String, worker: Int32? = nil) -> Data {
        // Written by hand so "line" comes first, as in output records.
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var data = Data("{\"line\":\(line),\"error\":".utf8)
        data.append((try? encoder.encode(ErrorBody(code: code, message: message, worker: worker))) ?? Data("null".utf8))
        data.append(contentsOf: Array("}\n".utf8))
        return data
    }
}

/// Prints records as they come, or in input order with `-k`.
final class LinePrinter {
    private let keepOrder: Bool
    private var order = InputOrder<Data>()
    private(set) var failures = 0

    init(keepOrder: Bool) { self.keepOrder = keepOrder }

    func print(sequence: Int, record: Data, failed: Bool) {
        if failed { failures += 1 }  // on arrival, whatever -k holds back
        guard keepOrder else { return Output.write(record, to: .standardOutput) }
        order.add(record, at: sequence) { Output.write($0, to: .standardOutput) }
    }
}
