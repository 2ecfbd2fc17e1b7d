import Foundation
import Multiprocessing

/// `--halt now|soon,fail=N|N%`: stop after enough failures; `now` also stops running jobs.
struct HaltPolicy {
    var stopsRunningJobs: Bool
    var failures: Int?
    var percentage: Double?

    init(parsing text: String) throws(UsageError) {
        if text == "never" {
            stopsRunningJobs = false
            failures = Int.max
            return
        }
        let parts = text.split(separator: ",", maxSplits: 1).map(String.init)
        guard parts.count == 2, ["now", "soon"].contains(parts[0]), parts[1].hasPrefix("fail=") else {
            throw UsageError("--halt takes now,fail=N or soon,fail=N (or N%), not '\(text)'")
        }
        stopsRunningJobs = parts[0] == "now"
        let amount = parts[1].dropFirst("fail=".count)
        if amount.hasSuffix("%"), let percent = Double(amount.dropLast()), percent > 0, percent <= 100 {
            percentage = percent
        } else if let count = Int(amount), count > 0 {
            failures = count
        } else {
            throw UsageError("--halt needs fail=N with N > 0 or fail=N% (0–100], not '\(amount)'")
        }
    }

    /// As in GNU parallel, a percentage is judged only once at least three jobs have ended.
    func isReached(failed: Int, finished: Int) -> Bool {
        if let failures { return failed >= failures }
        if let percentage, finished >= 3 { return Double(failed) * 100 >= percentage * Double(finished) }
        return false
    }
}

/// `--results DIR`: for job N, `DIR/N/stdout`, `DIR/N/stderr`, `DIR/N/exitval` (the exit
/// status, or 128 + the signal), `DIR/N/input` and `DIR/N/command`.
struct ResultsDirectory {
    let path: String

    init(path: String) throws {
        self.path = path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    /// Saves one job's input, command, output and exit value in `PATH/SEQUENCE/`.
    ///
    /// - Throws: ``FileError`` naming the file that could not be written and why.
    func record(sequence: Int, input: Bytes, command: Bytes, result: Result<CommandJob.Output, ProcessPoolError>) throws {
        let directory = path + "/" + String(sequence)
        if mkdir(directory, 0o755) != 0 && errno != EEXIST { throw FileError("create the results directory", directory) }
        var stdout = Data()
        var stderr = Data()
        var exitValue: Int32 = -1
        switch result {
        case .success(let output):
            stdout = Data(output.standardOutput)
            stderr = Data(output.standardError)
            exitValue = output.exitCode ?? (128 + (output.signal ?? 0))
        case .failure(let error):
            stderr = Data("pool: \(error)\n".utf8)
        }
        for (name, contents) in [("stdout", stdout), ("stderr", stderr), ("exitval", Data("\(exitValue)\n".utf8)),
                                 ("input", Data(input)), ("command", Data(command + [UInt8(ascii: "\n")]))] {
            try Self.write(contents, to: directory + "/" + name)
        }
    }

    /// Writes `contents` to a new file at `path`, replacing an old one.
    private static func write(_ contents: Data, to path: String) throws {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw FileError("write", path) }
        defer { close(descriptor) }
        guard writeWhole(contents, to: descriptor) else { throw FileError("write", path) }
    }
}

/// `--bar`: count, rate and ETA on one line of stderr, redrawn at most ten times a second,
/// and only when stderr is a terminal (in a pipe or a file it stays silent).
final class ProgressBar {
    private let total: Int?
    private let clock = ContinuousClock()
    private let start: ContinuousClock.Instant
    private var lastDraw: ContinuousClock.Instant?
    private var drawn = false
    private let enabled = isatty(2) == 1

    init(total: Int?) {
        self.total = total
        start = clock.now
    }

    func update(finished: Int, failed: Int) {
        guard enabled else { return }
        let now = clock.now
        if let lastDraw, now - lastDraw < .milliseconds(100) { return }
        lastDraw = now
        draw(finished: finished, failed: failed, now: now)
    }

    /// Erases the bar so a job's output starts on a clean line.
    func clear() {
        guard enabled, drawn else { return }
        FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
        drawn = false
    }

    func finish(finished: Int, failed: Int) {
        guard enabled else { return }
        draw(finished: finished, failed: failed, now: clock.now)
        FileHandle.standardError.write(Data("\n".utf8))
        drawn = false
    }

    private func draw(finished: Int, failed: Int, now: ContinuousClock.Instant) {
        let elapsed = now - start
        let seconds = max(0.001, Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
        let rate = Double(finished) / seconds
        var line = "\r\u{1B}[K"
        if let total, total > 0 {
            let fraction = Double(finished) / Double(total)
            let width = 30
            let filled = min(width, Int(fraction * Double(width)))
            let eta = rate > 0 ? Double(total - finished) / rate : 0
            line += "[" + String(repeating: "#", count: filled) + String(repeating: " ", count: width - filled) + "] "
            line += "\(finished)/\(total) \(Int(fraction * 100))% " + String(format: "%.1f jobs/s ETA %.0fs", rate, eta)
        } else {
            line += "\(finished) done " + String(format: "%.1f jobs/s", rate)
        }
        if failed > 0 { line += " (\(failed) failed)" }
        FileHandle.standardError.write(Data(line.utf8))
        drawn = true
    }
}
