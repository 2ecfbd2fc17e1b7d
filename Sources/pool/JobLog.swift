import Foundation
import Multiprocessing

/// GNU parallel's job log: a header, then one tab-separated line per finished job, written as
/// each job ends, so it is complete whenever `pool` stops.
///
/// Columns: Seq Host Starttime JobRuntime Send Receive Exitval Signal Command.
final class JobLog {
    static let header = "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n"
    private let handle: FileHandle

    /// Opens `path` for appending (with `--resume`) or anew, writing the header to a new log.
    ///
    /// - Throws: ``FileError`` naming the path and the system's reason.
    init(path: String, appending: Bool) throws {
        let exists = FileManager.default.fileExists(atPath: path)
        let descriptor = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (appending ? O_APPEND : O_TRUNC), 0o644)
        guard descriptor >= 0 else { throw FileError("write the job log", path) }
        handle = FileHandle(fileDescriptor: descriptor, closeOnDealloc: true)
        if (!appending || !exists) && !writeWhole(Data(Self.header.utf8), to: descriptor) {
            throw FileError("write the job log", path)
        }
        try handle.seekToEnd()
    }

    func record(sequence: Int, command rawCommand: Bytes, result: Result<CommandJob.Output, ProcessPoolError>) {
        // One job, one line: a newline in an input must not start a line of its own. The
        // command's other bytes are written as they are.
        var command: Bytes = []
        command.reserveCapacity(rawCommand.count)
        for byte in rawCommand {
            switch byte {
            case UInt8(ascii: "\\"): command += Array("\\\\".utf8)
            case UInt8(ascii: "\n"): command += Array("\\n".utf8)
            default: command.append(byte)
            }
        }
        let line: String
        switch result {
        case .success(let output):
            let received = output.standardOutput.count + output.standardError.count
            line = "\(sequence)\t:\t\(String(format: "%.3f", output.startTime))\t\(String(format: "%.3f", output.runtime))\t0\t\(received)\t\(output.exitCode ?? -1)\t\(output.signal ?? 0)\t"
        case .failure(let error):
            // The job did not finish on its own (timed out, worker lost, pool stopped).
            var signal: Int32 = 0
            if case .signaled(let number)? = error.terminationStatus { signal = number }
            line = "\(sequence)\t:\t\(String(format: "%.3f", Date().timeIntervalSince1970))\t0.000\t0\t0\t-1\t\(signal)\t"
        }
        handle.write(Data(Array(line.utf8) + command + [UInt8(ascii: "\n")]))
    }

    func close() { try? handle.close() }

    /// The sequence numbers a previous run logged: all of them, or (for `--resume-failed`)
    /// only those that succeeded, which are the ones to skip.
    static func finishedSequences(in path: String, successfulOnly: Bool) -> Set<Int> {
        // Read as bytes: the commands in it need not be UTF-8.
        guard let contents = FileManager.default.contents(atPath: path) else { return [] }
        var done: Set<Int> = []
        for line in Array(contents).split(separator: UInt8(ascii: "\n")).dropFirst() {
            let fields = line.split(separator: UInt8(ascii: "\t"), maxSplits: 8, omittingEmptySubsequences: false)
            func number(_ index: Int) -> Int? { Int(String(decoding: fields[index], as: UTF8.self)) }
            guard fields.count >= 9, let sequence = number(0) else { continue }
            if !successfulOnly || (number(6) == 0 && number(7) == 0) { done.insert(sequence) }
        }
        return done
    }
}
