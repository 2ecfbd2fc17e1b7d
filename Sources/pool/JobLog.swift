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

    func record(sequence: Int, command rawCommand: String, result: Result<CommandJob.Output, ProcessPoolError>) {
        // One job, one line: a newline in an input must not start a line of its own.
        let command = rawCommand.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\n", with: "\\n")
        let line: String
        switch result {
        case .success(let output):
            let received = output.standardOutput.count + output.standardError.count
            line = "\(sequence)\t:\t\(String(format: "%.3f", output.startTime))\t\(String(format: "%.3f", output.runtime))\t0\t\(received)\t\(output.exitCode ?? -1)\t\(output.signal ?? 0)\t\(command)\n"
        case .failure(let error):
            // The job did not finish on its own (timed out, worker lost, pool stopped).
            var signal: Int32 = 0
            if case .signaled(let number)? = error.terminationStatus { signal = number }
            line = "\(sequence)\t:\t\(String(format: "%.3f", Date().timeIntervalSince1970))\t0.000\t0\t0\t-1\t\(signal)\t\(command)\n"
        }
        handle.write(Data(line.utf8))
    }

    func close() { try? handle.close() }

    /// The sequence numbers a previous run logged: all of them, or (for `--resume-failed`)
    /// only those that succeeded, which are the ones to skip.
    static func finishedSequences(in path: String, successfulOnly: Bool) -> Set<Int> {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
        var done: Set<Int> = []
        for line in text.split(separator: "\n").dropFirst() {
            let fields = line.split(separator: "\t", omittingEmptySubsequences: false)
            guard fields.count >= 9, let sequence = Int(fields[0]) else { continue }
            if !successfulOnly || (fields[6] == "0" && fields[7] == "0") { done.insert(sequence) }
        }
        return done
    }
}
