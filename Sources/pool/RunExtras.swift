import Foundation
import Multiprocessing

/// `--halt now|soon,fail=N|N%` or `now|soon,success=N|N%`: stop after enough failures (or
/// successes); `now` also stops running jobs.
struct HaltPolicy {
    var stopsRunningJobs: Bool
    /// Whether successes, not failures, are counted.
    var countsSuccesses = false
    var count: Int?
    var percentage: Double?

    init(parsing text: String) throws(UsageError) {
        if text == "never" {
            stopsRunningJobs = false
            count = Int.max
            return
        }
        let parts = text.split(separator: ",", maxSplits: 1).map(String.init)
        guard parts.count == 2, ["now", "soon"].contains(parts[0]),
              let equals = parts[1].firstIndex(of: "="), ["fail", "success"].contains(parts[1][..<equals])
        else {
            throw UsageError("--halt takes now or soon, then fail=N or success=N (or N%), such as now,fail=1; not '\(text)'")
        }
        stopsRunningJobs = parts[0] == "now"
        countsSuccesses = parts[1][..<equals] == "success"
        let amount = parts[1][parts[1].index(after: equals)...]
        if amount.hasSuffix("%"), let percent = Double(amount.dropLast()), percent > 0, percent <= 100 {
            percentage = percent
        } else if let number = Int(amount), number > 0 {
            count = number
        } else {
            throw UsageError("--halt needs \(parts[1][..<equals])=N with N > 0, or N% with N in (0, 100], not '\(amount)'")
        }
    }

    /// As in GNU parallel, a percentage is judged only once at least three jobs have ended.
    func isReached(failed: Int, finished: Int) -> Bool {
        let counted = countsSuccesses ? finished - failed : failed
        if let count { return counted >= count }
        if let percentage, finished >= 3 { return Double(counted) * 100 >= percentage * Double(finished) }
        return false
    }
}

/// `--results DIR`: for job N, `DIR/N/stdout`, `DIR/N/stderr`, `DIR/N/exitval` (the exit
/// status, or 128 + the signal), `DIR/N/input` and `DIR/N/command`.
struct ResultsDirectory {
    let path: String

    /// Creates the directory, and its parents, if they do not exist.
    ///
    /// - Throws: ``FileError`` naming the directory that could not be created and why.
    init(path: String) throws {
        self.path = path
        var prefix = path.hasPrefix("/") ? "/" : ""
        for component in path.split(separator: "/") {
            prefix += component
            if mkdir(prefix, 0o755) != 0 && errno != EEXIST { throw FileError("create the results directory", prefix) }
            prefix += "/"
        }
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

/// `--bar`, `--eta`, `--progress`: one line of stderr, redrawn at most ten times a second,
/// and only when stderr is a terminal (in a pipe or a file it stays silent).
///
/// Until the number of jobs is known (inputs from stdin or a file are still being read), it
/// shows the count, the rate and the time so far; once it is, also the percentage and an
/// estimate of the time left.
final class ProgressBar {
    enum Style {
        /// `--bar`: a bar, the count, the percentage, the rate and the ETA.
        case bar
        /// `--eta`: the time left, the jobs left, and the average time per job.
        case eta
        /// `--progress`: the workers, the running and finished jobs, the percentage.
        case progress
    }

    private let style: Style
    private var total: Int?
    private let workers: Int
    private let clock = ContinuousClock()
    private let start: ContinuousClock.Instant
    private var lastDraw: ContinuousClock.Instant?
    private var drawn = false
    private let enabled = isatty(2) == 1

    init(style: Style, total: Int?, workers: Int) {
        self.style = style
        self.total = total
        self.workers = workers
        start = clock.now
    }

    /// The number of jobs, once the inputs have all been read.
    func setTotal(_ total: Int) { self.total = total }

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

    /// The line for `finished` jobs after `elapsed` seconds, without the escape codes.
    func line(finished: Int, failed: Int, elapsed seconds: Double) -> String {
        let seconds = max(0.001, seconds)
        let rate = Double(finished) / seconds
        var line: String
        if let total, total > 0 {
            let left = max(0, total - finished)
            let eta = rate > 0 ? Double(left) / rate : 0
            let percent = min(100, finished * 100 / total)
            switch style {
            case .bar:
                let width = 30
                let filled = min(width, finished * width / total)
                line = "[" + String(repeating: "#", count: filled) + String(repeating: " ", count: width - filled) + "] "
                line += "\(finished)/\(total) \(percent)% " + String(format: "%.1f jobs/s ETA %.0fs", rate, eta)
            case .eta:
                line = String(format: "ETA: %.0fs Left: %d AVG: %.2fs", eta, left, finished > 0 ? seconds / Double(finished) : 0)
            case .progress:
                line = "local:\(workers)/\(finished)/\(percent)% " + String(format: "%.1fs", seconds)
            }
        } else {
            line = "\(finished) done " + String(format: "%.1f jobs/s, %.0fs so far", rate, seconds)
        }
        if failed > 0 { line += " (\(failed) failed)" }
        return line
    }

    private func draw(finished: Int, failed: Int, now: ContinuousClock.Instant) {
        let elapsed = now - start
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        FileHandle.standardError.write(Data(("\r\u{1B}[K" + line(finished: finished, failed: failed, elapsed: seconds)).utf8))
        drawn = true
    }
}
