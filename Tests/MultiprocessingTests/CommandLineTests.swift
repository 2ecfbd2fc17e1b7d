import CMultiprocessingShims
import Foundation
import Synchronization
import Testing

/// Runs the built `pool` binary to completion, on a thread of its own.
private func pool(
    _ arguments: [String], standardInput: String? = nil, in directory: URL? = nil, environment: [String: String] = [:],
    launcher: [String] = []
) async throws -> PoolRun {
    try await pool(arguments, standardInputBytes: standardInput.map { Data($0.utf8) }, in: directory, environment: environment, launcher: launcher)
}

/// ``pool(_:standardInput:in:environment:launcher:)`` with stdin given as bytes, which need
/// not be UTF-8. `launcher` is a command that runs the rest (`prlimit …`, `setpriv …`) and
/// `poolPath` the binary it runs.
private func pool(
    _ arguments: [String], standardInputBytes: Data?, in directory: URL? = nil, environment: [String: String] = [:],
    launcher: [String] = [], poolPath: String = Binaries.directory + "/pool"
) async throws -> PoolRun {
    try await onDedicatedThread {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: launcher.first ?? poolPath)
        process.arguments = launcher.isEmpty ? arguments : launcher.dropFirst() + [poolPath] + arguments
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        if let directory { process.currentDirectoryURL = directory }
        let output = Pipe()
        let error = Pipe()
        process.standardOutput = output
        process.standardError = error
        let input = Pipe()
        process.standardInput = standardInputBytes == nil ? FileHandle.nullDevice : input
        try process.run()
        if let standardInputBytes {
            // Written from a thread of its own: a large input must not wait for the output
            // that only the reads below make room for.
            Thread {
                input.fileHandleForWriting.write(standardInputBytes)
                try? input.fileHandleForWriting.close()
            }.start()
        }
        // Read stderr on another thread so neither pipe can fill up and stall the child.
        let errorData = Mutex<Data>(Data())
        let errorRead = DispatchSemaphore(value: 0)
        let reader = Thread {
            errorData.withLock { $0 = error.fileHandleForReading.readDataToEndOfFile() }
            errorRead.signal()
        }
        reader.start()
        let outputData = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        errorRead.wait()
        return PoolRun(
            status: process.terminationStatus, outputBytes: outputData, errorBytes: errorData.withLock { $0 })
    }
}

/// How a run of `pool` ended, and what it wrote.
private struct PoolRun {
    var status: Int32
    /// Its stdout, byte for byte.
    var outputBytes: Data
    /// Its stderr, byte for byte.
    var errorBytes: Data
    var output: String { String(decoding: outputBytes, as: UTF8.self) }
    var error: String { String(decoding: errorBytes, as: UTF8.self) }
}

private func temporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("pool-cli-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

@Suite("The pool command line", .timeLimit(.minutes(2)))
struct CommandLineTests {
    @Test("replacement strings have GNU parallel's meanings")
    func replacementStrings() async throws {
        let result = try await pool(["run", "-k", "-j", "2", "echo", "{}", "{.}", "{/}", "{//}", "{/.}", "{#}", ":::", "dir/sub/a.tar.gz", "b"])
        #expect(result.status == 0, "\(result.error)")
        #expect(result.output == "dir/sub/a.tar.gz dir/sub/a.tar a.tar.gz dir/sub a.tar 1\nb b b . b 2\n")
    }

    @Test("without a replacement string the input is the last argument; inputs also come from stdin")
    func appendsInput() async throws {
        let result = try await pool(["run", "-k", "echo", "x"], standardInput: "one\ntwo\nthree\n")
        #expect(result.output == "x one\nx two\nx three\n")
        let nul = try await pool(["run", "-k", "-0", "echo"], standardInput: "a b\u{0}c\nd\u{0}")
        #expect(nul.output == "a b\nc\nd\n")
    }

    @Test("--keep-order prints in input order although jobs finish out of order")
    func keepOrder() async throws {
        let arguments = ["-j", "3", "sh", "-c", "sleep $1; echo $1", "_", ":::", "0.6", "0.1", "0.3"]
        let ordered = try await pool(["run", "-k"] + arguments)
        #expect(ordered.output == "0.6\n0.1\n0.3\n")
        let unordered = try await pool(["run"] + arguments)
        #expect(unordered.output == "0.1\n0.3\n0.6\n")
    }

    @Test("each job's output is printed whole, never interleaved with another's")
    func wholeJobOutput() async throws {
        let script = "for i in $(seq 200); do echo \"$1 line $i\"; done"
        let result = try await pool(["run", "-j", "4", "sh", "-c", script, "_", ":::"] + (1...8).map(String.init))
        let lines = result.output.split(separator: "\n")
        #expect(lines.count == 1600)
        for block in stride(from: 0, to: lines.count, by: 200) {
            let job = lines[block].split(separator: " ")[0]
            #expect(lines[block..<block + 200].allSatisfy { $0.hasPrefix("\(job) line ") })
        }
    }

    @Test("the exit status counts failed jobs, up to 101; usage errors give 2; pool failures 255")
    func exitStatuses() async throws {
        #expect(try await pool(["run", "true", ":::", "a", "b"]).status == 0)
        #expect(try await pool(["run", "sh", "-c", "exit $1", "_", ":::", "0", "3", "0", "1"]).status == 2)
        #expect(try await pool(["run", "-j", "4", "false", ":::"] + (1...105).map(String.init)).status == 101)
        let bad = try await pool(["run", "--frobnicate", "echo"])
        #expect(bad.status == 2)
        #expect(bad.error == "pool: unknown option '--frobnicate' (see 'pool help run')\n")
        #expect(try await pool(["run", "--worker", "/nonexistent/pool-worker", "echo", ":::", "a"]).status == 255)
        #expect(try await pool(["run", "no-such-command-here", ":::", "a"]).status == 1)
    }

    @Test("hostile inputs run nothing that was not asked for, with and without a shell")
    func hostileInputs() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let inputs = ["; touch pwned1", "$(touch pwned2)", "`touch pwned3`", "it's \"quoted\"", "two  spaces", "new\nline", "| touch pwned4", "&& touch pwned5"]
        let shell = try await pool(["run", "-k", "--shell", "printf '%s\\n' {}", ":::"] + inputs, in: directory)
        #expect(shell.status == 0, "\(shell.error)")
        #expect(shell.output == inputs.map { $0 + "\n" }.joined())
        let implied = try await pool(["run", "-k", "printf '[%s]' {}; echo", ":::"] + inputs, in: directory)
        #expect(implied.output == inputs.map { "[\($0)]\n" }.joined())
        // Inside double or single quotes in the template, an input is still exactly itself.
        let quoted = try await pool(["run", "-k", #"printf '%s|' "{}" '{}' x{}x; echo"#, ":::"] + inputs, in: directory)
        #expect(quoted.output == inputs.map { "\($0)|\($0)|x\($0)x|\n" }.joined())
        // Without a shell each input is exactly one argument.
        let direct = try await pool(["run", "-k", "sh", "-c", "printf '%s:%s\\n' \"$#\" \"$1\"", "_", ":::"] + inputs, in: directory)
        #expect(direct.output == inputs.map { "1:\($0)\n" }.joined())
        let created = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        #expect(created.isEmpty, "an input ran as code: \(created)")
    }

    @Test("--timeout stops a job that sleeps, and it counts as failed")
    func timeout() async throws {
        let clock = ContinuousClock()
        let start = clock.now
        // 2 s: long enough for `sleep 0` to start and end on a busy machine, far from 30 s.
        let result = try await pool(["run", "--timeout", "2", "sleep", ":::", "30", "0"])
        #expect(result.status == 1, "\(result.error)")
        #expect(result.error.contains("timedOut"), "\(result.error)")
        #expect(clock.now - start < .seconds(20))
    }

    @Test("--retries runs a failed job again")
    func retries() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let script = "if [ -e marker-$1 ]; then echo ok $1; else touch marker-$1; exit 1; fi"
        let once = try await pool(["run", "sh", "-c", script, "_", ":::", "a"], in: directory)
        #expect(once.status == 1)
        let retried = try await pool(["run", "--retries", "1", "sh", "-c", script, "_", ":::", "b"], in: directory)
        #expect(retried.status == 0)
        #expect(retried.output == "ok b\n")
    }

    @Test("--tag prefixes each output line with its input; --dry-run prints the commands")
    func tagAndDryRun() async throws {
        let tagged = try await pool(["run", "-k", "--tag", "printf", "%s\\n%s\\n", "{}", "{#}", ":::", "x", "y"])
        #expect(tagged.output == "x\tx\nx\t1\ny\ty\ny\t2\n")
        let dry = try await pool(["run", "--dry-run", "gzip", "-c", "{}", ":::", "a b.txt", "c"])
        #expect(dry.output == "gzip -c 'a b.txt'\ngzip -c c\n")
    }

    @Test("pool jobs lists what pool-worker serves; help and version")
    func jobsAndHelp() async throws {
        let jobs = try await pool(["jobs"])
        #expect(jobs.status == 0)
        #expect(jobs.output.split(separator: "\n").contains("command"))
        for arguments in [["--help"], ["help", "run"], ["run", "--help"], ["jobs", "--help"]] {
            let help = try await pool(arguments)
            #expect(help.status == 0)
            #expect(help.output.hasPrefix("usage: pool"), "\(arguments)")
        }
        #expect(try await pool(["--version"]).output.hasPrefix("pool "))
    }

    @Test("pool map: JSON lines in and out, bad lines get error records with their line numbers")
    func mapJSONLines() async throws {
        let input = "3\nnot json\n\"a string\"\n4\n\n{\"id\":1}\n"
        let result = try await pool(["map", "--worker", Binaries.fixtureWorker, "--job", "square", "-k"], standardInput: input)
        let lines = result.output.split(separator: "\n").map(String.init)
        #expect(lines.count == 6, "\(result.output)")
        #expect(lines[0] == #"{"line":1,"output":9}"#)
        #expect(lines[1].hasPrefix(#"{"line":2,"error":{"code":"invalidJSON""#))
        #expect(lines[2].hasPrefix(#"{"line":3,"error":{"code":"decodingFailed""#))
        #expect(lines[2].contains("expected Int"))
        #expect(lines[3] == #"{"line":4,"output":16}"#)
        #expect(lines[4].hasPrefix(#"{"line":5,"error":{"code":"invalidJSON""#))
        #expect(lines[5].hasPrefix(#"{"line":6,"error":{"code":"decodingFailed""#))
        #expect(result.status == 4)
        // Every record is valid JSON.
        for line in lines { #expect((try? JSONSerialization.jsonObject(with: Data(line.utf8))) != nil, "\(line)") }

        let structured = try await pool(
            ["map", "--worker", Binaries.fixtureWorker, "--job", "transform-record"],
            standardInput: #"{"id":1,"name":"a","tags":[],"scores":[1.5],"blob":"AAE=","attributes":{}}"# + "\n")
        #expect(structured.output == #"{"line":1,"output":{"attributes":{"count":1},"blob":"AQA=","id":2,"name":"A","scores":[3],"tags":["seen"]}}"# + "\n")

        let unknown = try await pool(["map", "--worker", Binaries.fixtureWorker, "--job", "nope"], standardInput: "1\n")
        #expect(unknown.status == 2)
        #expect(unknown.error.contains("square"))
    }

    @Test("--joblog writes GNU parallel's columns; --resume-failed reruns only the failures")
    func jobLogAndResume() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let log = directory.appendingPathComponent("jobs.log").path
        let first = try await pool(["run", "-k", "--joblog", log, "sh", "-c", "echo out $1; exit $1", "_", ":::", "0", "1", "0"])
        #expect(first.status == 1)
        let lines = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n").map(String.init)
        #expect(lines.first == "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand")
        #expect(lines.count == 4)
        let rows = lines.dropFirst().map { $0.split(separator: "\t", omittingEmptySubsequences: false).map(String.init) }
        #expect(rows.map { $0[0] }.sorted() == ["1", "2", "3"])
        for row in rows {
            #expect(row.count == 9)
            #expect(row[1] == ":")
            #expect(Double(row[2]) != nil && Double(row[3]) != nil)
            #expect(row[5] == "6")  // "out N\n"
            #expect(row[6] == (row[0] == "2" ? "1" : "0"))
            #expect(row[8] == "sh -c 'echo out $1; exit $1' _ \(row[0] == "2" ? "1" : "0")")
        }
        let rerun = try await pool(["run", "-k", "--joblog", log, "--resume-failed", "sh", "-c", "echo again $1", "_", ":::", "0", "1", "0"])
        #expect(rerun.status == 0)
        #expect(rerun.output == "again 1\n")
        let resumed = try await pool(["run", "-k", "--joblog", log, "--resume", "echo", ":::", "0", "1", "0", "extra"])
        #expect(resumed.output == "extra\n")
    }

    @Test("Ctrl-C stops the run: exit 130, a complete job log, nothing left running, and --resume continues")
    func interrupt() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let log = directory.appendingPathComponent("jobs.log").path
        let started = try StartSignal()
        defer { started.remove() }
        // The slow command ignores SIGTERM: only the pool's SIGKILL of its group can stop it.
        let script = "if [ \"$1\" = slow ]; then trap '' TERM; printf x > \"$0\"; exec sleep 31.5; else echo $1; fi"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Binaries.directory + "/pool")
        process.arguments = ["run", "-j", "1", "--joblog", log, "sh", "-c", script, started.path, ":::", "a", "b", "slow", "c"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        await started.wait()
        kill(process.processIdentifier, SIGINT)
        let status = try await onDedicatedThread { process.waitUntilExit(); return process.terminationStatus }
        #expect(status == 130)
        let logged = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n").dropFirst().map { String($0.split(separator: "\t")[0]) }
        #expect(logged.sorted() == ["1", "2"])
        let leftovers = try await onDedicatedThread { () -> String in
            let pgrep = Process()
            pgrep.executableURL = URL(fileURLWithPath: "/usr/bin/pgrep")
            pgrep.arguments = ["-f", "sleep 31.5"]
            let pipe = Pipe()
            pgrep.standardOutput = pipe
            try pgrep.run()
            pgrep.waitUntilExit()
            return String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        }
        #expect(leftovers.isEmpty, "still running: \(leftovers)")
        let resumed = try await pool(["run", "-k", "-j", "1", "--joblog", log, "--resume", "echo", "resumed", ":::", "a", "b", "slow", "c"])
        #expect(resumed.output == "resumed slow\nresumed c\n")
    }

    @Test("--halt soon stops starting jobs after the failures; --halt now also stops running ones")
    func halt() async throws {
        let soon = try await pool(["run", "-j", "1", "--halt", "soon,fail=1", "sh", "-c", "echo $1; exit $1", "_", ":::", "0", "1", "0", "0"])
        #expect(soon.output == "0\n1\n")
        #expect(soon.status == 1)
        let clock = ContinuousClock()
        let start = clock.now
        let now = try await pool(["run", "-j", "2", "--halt", "now,fail=1", "sh", "-c", "if [ $1 = fail ]; then exit 1; fi; sleep $1", "_", ":::", "30", "fail", "30"])
        #expect(now.status >= 1)
        #expect(clock.now - start < .seconds(15))
        let bad = try await pool(["run", "--halt", "sometimes", "true"])
        #expect(bad.status == 2)
    }

    @Test("--results saves each job's output and exit status")
    func resultsDirectory() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let results = directory.appendingPathComponent("out").path
        _ = try await pool(["run", "--results", results, "sh", "-c", "echo o$1; echo e$1 >&2; exit $1", "_", ":::", "0", "3"])
        func read(_ name: String) throws -> String { try String(contentsOfFile: results + "/" + name, encoding: .utf8) }
        #expect(try read("1/stdout") == "o0\n")
        #expect(try read("2/stderr") == "e3\n")
        #expect(try read("2/exitval") == "3\n")
        #expect(try read("2/input") == "3")
    }

    @Test("--bar draws a progress bar on a terminal and nothing in a pipe")
    func progressBar() async throws {
        // `script` gives pool a pseudo-terminal; its transcript is what a person would see.
        func onTerminal(_ commandLine: String) async throws -> String {
            try await onDedicatedThread { () -> String in
                let script = Process()
                script.executableURL = URL(fileURLWithPath: "/usr/bin/script")
                script.arguments = ["-qfec", commandLine, "/dev/null"]
                let pipe = Pipe()
                script.standardOutput = pipe
                script.standardInput = FileHandle.nullDevice
                try script.run()
                let data = pipe.fileHandleForReading.readDataToEndOfFile()
                script.waitUntilExit()
                return String(decoding: data, as: UTF8.self)
            }
        }
        let terminal = try await onTerminal("\(Binaries.directory)/pool run --bar -j 2 sleep ::: 0.2 0.2 0.2 0.2")
        #expect(terminal.contains("4/4 100%"), "\(terminal.debugDescription)")
        #expect(terminal.contains("jobs/s"))
        // Inputs from stdin: the count is known once they end, and then the bar has it.
        let streamed = try await onTerminal("printf '0.1\\n0.1\\n0.1\\n' | \(Binaries.directory)/pool run --bar -j 2 sleep")
        #expect(streamed.contains("3/3 100%"), "\(streamed.debugDescription)")
        let piped = try await pool(["run", "--bar", "-j", "2", "sleep", ":::", "0.1", "0.1"])
        #expect(piped.error.isEmpty)
    }

    @Test("inputs from a slow stdin run, and print, as they arrive")
    func streamingInput() async throws {
        let (first, rest) = try await onDedicatedThread { () -> (String, String) in
            let process = Process()
            process.executableURL = URL(fileURLWithPath: Binaries.directory + "/pool")
            process.arguments = ["run", "echo", "got"]
            let input = Pipe()
            let output = Pipe()
            process.standardInput = input
            process.standardOutput = output
            process.standardError = FileHandle.nullDevice
            try process.run()
            input.fileHandleForWriting.write(Data("a\n".utf8))
            // stdin stays open: the first result must come out anyway.
            var line = Data()
            while !line.contains(UInt8(ascii: "\n")) {
                let chunk = output.fileHandleForReading.availableData
                if chunk.isEmpty { break }
                line.append(chunk)
            }
            input.fileHandleForWriting.write(Data("b\n".utf8))
            try input.fileHandleForWriting.close()
            let remainder = output.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return (String(decoding: line, as: UTF8.self), String(decoding: remainder, as: UTF8.self))
        }
        #expect(first == "got a\n")
        #expect(rest == "got b\n")
    }

    @Test("--line-buffer prints a job's lines while it runs, each line whole")
    func lineBufferStreamsWhileRunning() async throws {
        let gate = FileManager.default.temporaryDirectory.appendingPathComponent("gate-\(UUID().uuidString)").path
        guard mkfifo(gate, 0o600) == 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
        defer { unlink(gate) }
        // The job prints a line, then blocks until the test opens the gate: the line can only
        // have reached the test if it was printed while the job was still running.
        let (first, rest, status) = try await onDedicatedThread { () -> (String, String, Int32) in
            let process = Process()
            process.executableURL = URL(fileURLWithPath: Binaries.directory + "/pool")
            process.arguments = ["run", "--line-buffer", "--tag", "sh", "-c", "echo before $1; cat \"$0\" > /dev/null; echo after $1", gate, ":::", "x"]
            let output = Pipe()
            process.standardOutput = output
            process.standardError = FileHandle.nullDevice
            try process.run()
            var line = Data()
            while !line.contains(UInt8(ascii: "\n")) {
                let chunk = output.fileHandleForReading.availableData
                if chunk.isEmpty { break }
                line.append(chunk)
            }
            let opened = open(gate, O_WRONLY)
            close(opened)
            let remainder = output.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return (String(decoding: line, as: UTF8.self), String(decoding: remainder, as: UTF8.self), process.terminationStatus)
        }
        #expect(first == "x\tbefore x\n")
        #expect(rest == "x\tafter x\n")
        #expect(status == 0)

        // Two jobs writing many lines at once: lines interleave, but none is cut in two.
        let script = "i=0; while [ $i -lt 2000 ]; do echo \"job $1 line $i of many words to make the line longer\"; i=$((i+1)); done"
        let mixed = try await pool(["run", "--line-buffer", "-j", "2", "sh", "-c", script, "_", ":::", "a", "b"])
        let lines = mixed.output.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
        #expect(lines.count == 4000)
        // One regex for all lines: a literal inside the closure would be compiled again for
        // each of the 4000 (seconds of a cooperative thread in a debug build).
        let wellFormed = /job [ab] line \d+ of many words to make the line longer/
        let malformed = lines.filter { $0.wholeMatch(of: wellFormed) == nil }
        #expect(malformed.isEmpty, "cut lines: \(malformed.prefix(3))")
        for job in ["a", "b"] {
            let numbers = lines.filter { $0.hasPrefix("job \(job) ") }.map { Int($0.split(separator: " ")[3])! }
            #expect(numbers == Array(0..<2000))
        }

        // With -k, the lines come out in input order even though the last job finishes first;
        // --results still gets each job's whole output.
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let ordered = try await pool(["run", "--line-buffer", "-k", "-j", "3", "--results", directory.path,
                                      "sh", "-c", "echo one $1; sleep $1; echo two $1", "_", ":::", "0.4", "0.2", "0"])
        #expect(ordered.output == "one 0.4\ntwo 0.4\none 0.2\ntwo 0.2\none 0\ntwo 0\n")
        #expect(try String(contentsOfFile: directory.path + "/3/stdout", encoding: .utf8) == "one 0\ntwo 0\n")
    }

    @Test("pool map prints only JSON it checked: a worker's forged lines become an error record naming it")
    func forgedOutputIsRefused() async throws {
        let result = try await pool(
            ["map", "--worker", Binaries.fixtureWorker, "--job", "square", "-j", "1"], standardInput: "7\n",
            environment: ["FIXTURE_BROKEN_MODE": "forge-json"])
        #expect(!result.output.contains("INJECTED"))
        let lines = result.output.split(separator: "\n")
        #expect(lines.count == 1, "one record per input line: \(result.output)")
        #expect(lines.first?.hasPrefix(#"{"line":1,"error":{"code":"protocolViolation""#) == true, "\(result.output)")
        #expect(lines.first?.contains(#""worker":"#) == true, "the record names the worker: \(result.output)")
        #expect(result.status == 1)
    }

    @Test("results or a job log that cannot be written are errors naming the path and the reason")
    func unwritableFiles() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        // A file where job 2's results directory must go: creating it fails even for root.
        try Data().write(to: directory.appendingPathComponent("2"))
        let results = try await pool(["run", "-k", "--results", directory.path, "echo", ":::", "a", "b", "c"])
        #expect(results.output == "a\nb\nc\n")
        #expect(results.error.contains(directory.path + "/2"), "\(results.error)")
        #expect(results.error.contains("File exists") || results.error.contains("Not a directory"), "\(results.error)")
        #expect(results.status == 1, "the job whose results were lost counts as failed")
        #expect(try String(contentsOf: directory.appendingPathComponent("3/stdout"), encoding: .utf8) == "c\n")

        let log = directory.path + "/no-such-folder/log"
        let logged = try await pool(["run", "--joblog", log, "echo", ":::", "a"])
        #expect(logged.status == 255)
        #expect(logged.error == "pool: cannot write the job log \(log): No such file or directory\n")
    }

    @Test("-j beyond the descriptor limit runs on half the workers it could start, and says so")
    func moreWorkersThanTheDescriptorLimit() async throws {
        let inputs = (1...20).map(String.init)
        let result = try await pool(["run", "-k", "-j", "1000", "echo", ":::"] + inputs, launcher: ["/usr/bin/prlimit", "--nofile=100"])
        #expect(result.status == 0, "\(result.error)")
        #expect(result.output == inputs.map { $0 + "\n" }.joined())
        #expect(result.error.hasPrefix("pool: running "), "\(result.error)")
        #expect(result.error.contains("workers, not 1000: spawnFailed"), "\(result.error)")
        #expect(result.error.contains("EMFILE"), "\(result.error)")
        #expect(result.error.contains("RLIMIT_NOFILE (open descriptors per process) is 100"), "\(result.error)")
    }

    @Test("pool map --timeout stops a line's job; the other lines succeed")
    func mapTimeout() async throws {
        let result = try await pool(
            ["map", "--worker", Binaries.fixtureWorker, "--job", "sleep-pid", "-k", "-j", "2", "--timeout", "1"], standardInput: "0\n60000\n0\n")
        let lines = result.output.split(separator: "\n").map(String.init)
        #expect(lines.count == 3, "\(result.output)")
        #expect(lines[0].hasPrefix(#"{"line":1,"output":"#))
        #expect(lines[1].hasPrefix(#"{"line":2,"error":{"code":"timedOut""#), "\(result.output)")
        #expect(lines[2].hasPrefix(#"{"line":3,"output":"#))
        #expect(result.status == 1)
    }

    @Test("a job that writes endless output is killed at --max-output and fails saying so")
    func endlessOutputIsCapped() async throws {
        let result = try await pool(["run", "--max-output", "1M", "yes", ":::", "a"])
        #expect(result.status == 1)
        #expect(result.output.isEmpty, "what it wrote is dropped, not printed in part")
        #expect(result.error.contains("more than 1048576 bytes of output"), "\(result.error)")
        // Under the limit, output is whole.
        let small = try await pool(["run", "--max-output", "1K", "printf", "%s", ":::", "fits"])
        #expect(small.status == 0)
        #expect(small.output == "fits")
    }

    @Test("pool map refuses a line that is not UTF-8 with an error record; a long line after it is whole")
    func mapRefusesInvalidUTF8() async throws {
        let long = "\"" + String(repeating: "x", count: 1 << 20) + "\""
        let input = "\"caf\u{E9}\"\n" + long + "\n"
        var bytes = Array(input.utf8)
        // Replace the UTF-8 é (C3 A9) of line 1 with Latin-1's lone E9.
        let e = bytes.firstIndex(of: 0xC3)!
        bytes.replaceSubrange(e...(e + 1), with: [0xE9])
        let result = try await pool(["map", "--worker", Binaries.poolWorker, "--job", "echo", "-k"], standardInputBytes: Data(bytes))
        let lines = result.output.split(separator: "\n").map(String.init)
        #expect(lines.count == 2)
        #expect(lines.first?.hasPrefix(#"{"line":1,"error":{"code":"invalidJSON","message":"the line is not valid UTF-8 (byte 0xe9 at offset 4)"#) == true, "\(lines.first ?? "")")
        #expect(lines.last == #"{"line":2,"output":"# + long + "}")
        #expect(result.status == 1)
    }

    @Test("file names and inputs that are not UTF-8 reach the command, --tag, --dry-run, --results and the job log byte for byte")
    func nonUTF8Inputs() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        // "café.txt" in Latin-1: the é is the single byte 0xE9, which is not UTF-8.
        let name = Data("caf".utf8) + Data([0xE9]) + Data(".txt".utf8)
        let path = Data(directory.path.utf8) + Data("/".utf8) + name
        let descriptor = (path + Data([0])).withUnsafeBytes { open($0.baseAddress!.assumingMemoryBound(to: CChar.self), O_WRONLY | O_CREAT, 0o644) }
        #expect(descriptor >= 0)
        _ = "hi\n".withCString { write(descriptor, $0, 3) }
        close(descriptor)

        // As `ls | pool run cat` would: names on stdin, one per line, and with -0.
        let lines = try await pool(["run", "-k", "--tag", "cat"], standardInputBytes: name + Data("\n".utf8), in: directory)
        #expect(lines.outputBytes == name + Data("\thi\n".utf8), "\(lines.error)")
        #expect(lines.status == 0)
        let nulls = try await pool(["run", "-0", "cat"], standardInputBytes: name + Data([0]), in: directory)
        #expect(nulls.outputBytes == Data("hi\n".utf8), "\(nulls.error)")

        // After :::, through a shell template, quoted for the shell; `sh` makes the argument,
        // since Foundation's Process takes only text.
        let shell = try await pool(
            [], standardInputBytes: nil, in: directory,
            launcher: ["/bin/sh", "-c", #"x=$(printf 'caf\351.txt'); exec "$0" run -k 'cat {}; echo {.}' ::: "$x""#])
        #expect(shell.outputBytes == Data("hi\ncaf".utf8) + Data([0xE9]) + Data("\n".utf8), "\(shell.error)")
        let dryRun = try await pool(
            [], standardInputBytes: nil, in: directory,
            launcher: ["/bin/sh", "-c", #"x=$(printf "it's \351"); exec "$0" run --dry-run cat ::: "$x""#])
        #expect(dryRun.outputBytes == Data(#"cat 'it'\''s "#.utf8) + Data([0xE9]) + Data("'\n".utf8))

        // --results and the job log keep the bytes; --resume reads them back.
        let results = directory.appendingPathComponent("results").path
        let log = directory.appendingPathComponent("log").path
        let saved = try await pool(["run", "--results", results, "--joblog", log, "cat"], standardInputBytes: name + Data("\n".utf8), in: directory)
        #expect(saved.status == 0, "\(saved.error)")
        #expect(FileManager.default.contents(atPath: results + "/1/input") == name)
        #expect(FileManager.default.contents(atPath: results + "/1/stdout") == Data("hi\n".utf8))
        #expect(FileManager.default.contents(atPath: results + "/1/command") == Data("cat '".utf8) + name + Data("'\n".utf8))
        let logged = FileManager.default.contents(atPath: log) ?? Data()
        #expect(logged.suffix(name.count + 8) == Data("\tcat '".utf8) + name + Data("'\n".utf8))
        let resumed = try await pool(["run", "--joblog", log, "--resume", "cat"], standardInputBytes: name + Data("\n".utf8), in: directory)
        #expect(resumed.outputBytes.isEmpty, "the logged job is not run again: \(resumed.output)")
    }

    @Test("several input sources combine, the last varying fastest; :::+ and --link pair them; :::: and -a read files")
    func inputSources() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try Data("a\nb\n".utf8).write(to: directory.appendingPathComponent("letters"))
        try Data("1\n2\n3\n".utf8).write(to: directory.appendingPathComponent("numbers"))
        func run(_ arguments: [String], standardInput: String? = nil) async throws -> String {
            let result = try await pool(["run", "-k"] + arguments, standardInput: standardInput, in: directory)
            #expect(result.status == 0, "\(arguments): \(result.error)")
            return result.output
        }
        #expect(try await run(["printf", "%s-%s\\n", "{1}", "{2}", ":::", "x", "y", ":::", "7", "8"]) == "x-7\nx-8\ny-7\ny-8\n")
        #expect(try await run(["echo", ":::", "x", "y", ":::+", "7", "8", "9"]) == "x 7\ny 8\n")
        #expect(try await run(["--link", "echo", ":::", "a", "b", "c", ":::", "1", "2"]) == "a 1\nb 2\nc 1\n")
        #expect(try await run(["echo", "::::", "letters", "numbers"]) == "a 1\na 2\na 3\nb 1\nb 2\nb 3\n")
        #expect(try await run(["echo", "::::", "letters", "::::+", "numbers"]) == "a 1\nb 2\n")
        #expect(try await run(["-a", "letters", "echo", "{2}{1}", ":::", "x"]) == "xa\nxb\n")
        #expect(try await run(["echo", "{-1}", "{-2}", "::::", "-", ":::", "1", "2"], standardInput: "p\nq\n") == "1 p\n2 p\n1 q\n2 q\n")
        // A source with no values leaves nothing to combine.
        #expect(try await run(["echo", ":::", "a", ":::"]) == "")
    }

    @Test("positional replacement strings take the modifiers; -I and its relatives respell them")
    func positionalReplacements() async throws {
        let result = try await pool(["run", "-k", "echo", "{1.}", "{1/}", "{2//}", "{2/.}", "{3}", ":::", "d/a.b", ":::", "e/f.g"])
        #expect(result.output == "d/a a.b e f \n", "\(result.error)")
        let respelled = try await pool(["run", "-k", "-I", "@@", "--extensionreplace", "@.", "--seqreplace", "@#", "echo", "@@", "@.", "@#", "{}", ":::", "x.y"])
        #expect(respelled.output == "x.y x 1 {}\n", "\(respelled.error)")
        // A word that stands for several arguments splits where they meet, as the shell splits
        // GNU parallel's line; under a shell, each is quoted on its own.
        let split = try await pool(["run", "-k", "printf", "[%s]", "pre{}post", ":::", "a b", ":::", "c"])
        #expect(split.output == "[prea b][cpost]", "\(split.error)")
        let shell = try await pool(["run", "-k", "printf '[%s]' {}", ":::", "a b", ":::", "c'd"])
        #expect(shell.output == "[a b][c'd]", "\(shell.error)")
    }

    @Test("a misspelled source separator or an input file that cannot be read stops the run before any job")
    func sourceErrors() async throws {
        for separator in [":::::", ":::++", "::::++"] {
            let result = try await pool(["run", "echo", "x", separator, "a"])
            #expect(result.status == 2)
            #expect(result.output.isEmpty)
            #expect(result.error == "pool: '\(separator)' is not an input source separator (they are :::, :::+, :::: and ::::+)\n")
        }
        let noFile = try await pool(["run", "echo", "::::"])
        #expect(noFile.status == 2)
        #expect(noFile.error == "pool: '::::' needs at least one input file after it\n")
        let linkedFirst = try await pool(["run", "echo", ":::+", "a"])
        #expect(linkedFirst.status == 2)
        let missing = try await pool(["run", "echo", ":::", "a", "b", "::::", "/nonexistent/inputs"])
        #expect(missing.status == 255)
        #expect(missing.output.isEmpty)
        #expect(missing.error == "pool: cannot read the input file /nonexistent/inputs: No such file or directory\n")
        let missingArgumentFile = try await pool(["run", "-a", "/nonexistent/inputs", "echo"])
        #expect(missingArgumentFile.status == 255)
    }

    /// GNU parallel 20221122's `--dry-run -k -j1` output for each command line, as it printed
    /// it on this machine (the files are those `dryRunsMatchGNUParallel` writes). The comparison is of
    /// argument vectors: each printed line is split into words by /bin/sh, so the two tools may
    /// quote differently.
    static let gnuParallelDryRuns: [(String, String)] = [
        ("echo ::: a b c",
         "echo a\necho b\necho c"),
        ("echo {} ::: a b c",
         "echo a\necho b\necho c"),
        ("echo {.} {/} {//} {/.} ::: dir/sub/file.tar.gz plain .hidden /root.txt",
         "echo dir/sub/file.tar file.tar.gz dir/sub file.tar\necho plain plain . plain\necho '' .hidden . ''\necho /root root.txt / root"),
        ("echo {#} {} ::: a b c",
         "echo 1 a\necho 2 b\necho 3 c"),
        ("printf %s-%s {1} {2} ::: x y ::: 7 8",
         "printf %s-%s x 7\nprintf %s-%s x 8\nprintf %s-%s y 7\nprintf %s-%s y 8"),
        ("echo ::: x y ::: 7 8",
         "echo x 7\necho x 8\necho y 7\necho y 8"),
        ("echo {} ::: x y ::: 7 8",
         "echo x 7\necho x 8\necho y 7\necho y 8"),
        ("echo {2} {1} ::: x y :::+ 7 8",
         "echo 7 x\necho 8 y"),
        ("echo {-1} {-2} ::: a b ::: 1 2",
         "echo 1 a\necho 2 a\necho 1 b\necho 2 b"),
        ("echo {1.} {1/} {2//} {2/.} ::: d/a.b ::: e/f.g",
         "echo d/a a.b e f"),
        ("echo ::: a b c :::+ 1 2 ::: x y",
         "echo a 1 x\necho a 1 y\necho b 2 x\necho b 2 y"),
        ("--link echo ::: a b c ::: 1 2",
         "echo a 1\necho b 2\necho c 1"),
        ("--xapply echo {2} ::: a b c ::: 1 2",
         "echo 1\necho 2\necho 1"),
        ("echo :::: in.txt",
         "echo a\necho b"),
        ("echo :::: in.txt n.txt",
         "echo a 1\necho a 2\necho b 1\necho b 2"),
        ("echo :::: in.txt ::::+ n.txt",
         "echo a 1\necho b 2"),
        ("-a in.txt echo",
         "echo a\necho b"),
        ("-a in.txt -a n.txt echo {2}{1}",
         "echo 1a\necho 2a\necho 1b\necho 2b"),
        ("-a in.txt echo ::: x y",
         "echo a x\necho a y\necho b x\necho b y"),
        ("-I XX echo XX ::: a b",
         "echo a\necho b"),
        ("-I ,, echo ,,.txt {} ::: a",
         "echo a.txt {}"),
        ("--extensionreplace EXT echo EXT ::: a.b",
         "echo a"),
        ("--basenamereplace BN --dirnamereplace DN echo BN DN ::: x/y/z",
         "echo z x/y"),
        ("--seqreplace SEQ echo SEQ ::: a b",
         "echo 1\necho 2"),
        ("echo pre{}post ::: a b",
         "echo preapost\necho prebpost"),
        ("echo {1}-{2} ::: a ::: 1 2 3",
         "echo a-1\necho a-2\necho a-3"),
        ("-n 2 echo {1} ::: a b c d",
         "echo a\necho c"),
        ("-N 2 echo {} ::: a b c",
         "echo a b\necho c"),
        ("-n 2 echo ::: a b c ::: 1 2",
         "echo a 1 a 2\necho b 1 b 2\necho c 1 c 2"),
        ("-N 2 echo {1} {2} {3} ::: a b c ::: 1 2",
         "echo a 1 a\necho b 1 b\necho c 1 c"),
        ("-m echo ::: a b c",
         "echo a b c"),
        ("-X echo x{}y ::: a b c",
         "echo xay xby xcy"),
        ("-m echo x{}y ::: a b c",
         "echo xa b cy"),
        ("-s 12 -m echo ::: aaa bbb ccc ddd",
         "echo aaa\necho bbb\necho ccc\necho ddd"),
        ("-s 13 -m echo ::: aaa bbb ccc ddd",
         "echo aaa bbb\necho ccc ddd"),
        ("-s 20 -X echo x{}y ::: aaa bbb ccc ddd",
         "echo xaaay xbbby\necho xcccy xdddy"),
        ("-n 0 echo x ::: a b",
         "echo x \necho x "),
        ("-n 3 echo {#} {} ::: a b c d e",
         "echo 1 a b c\necho 2 d e"),
        ("-d , echo :::: comma.txt",
         "echo a\necho b\necho c"),
        ("-n 2 -k echo :::: in.txt n.txt",
         "echo a 1 a 2\necho b 1 b 2"),
        ("-m -s 30 echo {.} ::: a.x b.y c.z d.w e.v",
         "echo a b c d e"),
        (#"--colsep '\t' echo {2} {1} :::: tab.txt"#,
         #"echo b a\#necho d c"#),
        (#"--colsep ' ' echo {1}-{2}-{3}-{4} :::: sp.txt"#,
         #"echo x-y-''-z"#),
        (#"--colsep ' +' echo {1}-{2}-{3} :::: sp.txt"#,
         #"echo x-y-z"#),
        (#"--colsep , --header : echo {age} {name} :::: h.csv"#,
         #"echo 3 ann\#necho 4 bob"#),
        (#"--header : echo {f1} {f2} ::: f1 a b ::: f2 1 2"#,
         #"echo a 1\#necho a 2\#necho b 1\#necho b 2"#),
        (#"--colsep '\t' echo :::: tab.txt"#,
         #"echo a b\#necho c d"#),
        (#"--colsep , echo {} :::: h.csv"#,
         #"echo name age\#necho ann 3\#necho bob 4"#),
        (#"--colsep '\t' echo {2} {3} :::: tab.txt ::: X"#,
         #"echo b X\#necho d X"#),
        (#"--colsep , --header 1 echo {1} :::: h.csv"#,
         #"echo ann\#necho bob"#),
        (#"--colsep , --header : echo {2} {name} {1.} :::: h.csv"#,
         #"echo 3 ann ann\#necho 4 bob bob"#),
        (#"--colsep ' ' echo {2} ::: 'p q' 'r s'"#,
         #"echo q\#necho s"#),
        (#"--colsep '[,;]' echo {3} {1} ::: 'a,b;c'"#,
         #"echo c a"#),
    ]

    @Test("--dry-run prints the commands GNU parallel prints for the same command lines")
    func dryRunsMatchGNUParallel() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try Data("a\nb\n".utf8).write(to: directory.appendingPathComponent("in.txt"))
        try Data("1\n2\n".utf8).write(to: directory.appendingPathComponent("n.txt"))
        try Data("a,b,c".utf8).write(to: directory.appendingPathComponent("comma.txt"))
        try Data("a\tb\nc\td\n".utf8).write(to: directory.appendingPathComponent("tab.txt"))
        try Data("x y  z\n".utf8).write(to: directory.appendingPathComponent("sp.txt"))
        try Data("name,age\nann,3\nbob,4\n".utf8).write(to: directory.appendingPathComponent("h.csv"))
        var mismatches: [String] = []
        for (commandLine, expected) in Self.gnuParallelDryRuns {
            // The shell reads the command line, quotes and all, as it would for GNU parallel.
            let result = try await pool(
                [], standardInputBytes: nil, in: directory,
                launcher: ["/bin/sh", "-c", #"exec "$0" run -k --dry-run -j 1 "# + commandLine])
            #expect(result.status == 0, "\(commandLine): \(result.error)")
            let ours = try await shellWords(result.output)
            let theirs = try await shellWords(expected + "\n")
            if ours != theirs { mismatches.append("\(commandLine)\n  pool:         \(ours)\n  GNU parallel: \(theirs)") }
        }
        #expect(mismatches.isEmpty, "\(mismatches.count) of \(Self.gnuParallelDryRuns.count) differ:\n\(mismatches.joined(separator: "\n"))")
        #expect(Self.gnuParallelDryRuns.count >= 53)
    }

    /// Each line of `lines` split into words the way /bin/sh splits it, as `[word][word]`.
    private func shellWords(_ lines: String) async throws -> [String] {
        var script = ""
        for line in lines.split(separator: "\n", omittingEmptySubsequences: false).dropLast() {
            script += "printf '[%s]' \(line); echo\n"
        }
        let run = try await pool([], standardInputBytes: nil, launcher: ["/bin/sh", "-c", script])
        return run.output.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init)
    }

    @Test("an input longer than an argument can be fails alone, read without being kept; the others run")
    func inputTooLong() async throws {
        var input = Data("a\n".utf8)
        input.append(Data(repeating: UInt8(ascii: "x"), count: 3 << 20))
        input.append(Data("\nb\n".utf8))
        let result = try await pool(["run", "-k", "echo"], standardInputBytes: input)
        #expect(result.output == "a\nb\n")
        #expect(result.error == "pool: input 2 is \(3 << 20) bytes; an argument holds at most 131071 (the kernel's MAX_ARG_STRLEN), so its job did not run\n")
        #expect(result.status == 1)
    }

    @Test("-n packs inputs into jobs; -m and -X pack as many as fit -s, -X repeating the word around {}")
    func argumentPacking() async throws {
        let counted = try await pool(["run", "-k", "-n", "2", "echo", "{#}:", "{}", ":::", "a", "b", "c"])
        #expect(counted.output == "1: a b\n2: c\n", "\(counted.error)")
        let fitted = try await pool(["run", "-k", "-j", "1", "-m", "-s", "13", "echo", ":::", "aaa", "bbb", "ccc", "ddd"])
        #expect(fitted.output == "aaa bbb\nccc ddd\n", "\(fitted.error)")
        let repeated = try await pool(["run", "-k", "-X", "printf", "[%s]", "x{}y", ":::", "a", "b"])
        #expect(repeated.output == "[xay][xby]", "\(repeated.error)")
        let all = try await pool(["run", "-m", "sh", "-c", "echo $#", "_"], standardInput: (1...5000).map { "\($0)\n" }.joined())
        let counts = all.output.split(separator: "\n").compactMap { Int($0) }
        #expect(counts.reduce(0, +) == 5000, "every input once: \(all.output) \(all.error)")
        #expect(counts.count < 5, "packed into a few commands: \(counts)")
    }

    @Test("--colsep splits inputs into {1} {2} …; --header names them; bytes that are not UTF-8 split too")
    func columns() async throws {
        let csv = try await pool(["run", "-k", "--colsep", ",", "--header", ":", "echo", "{age}:{name}"], standardInput: "name,age\nann,3\nbob,4\n")
        #expect(csv.output == "3:ann\n4:bob\n", "\(csv.error)")
        let regex = try await pool(["run", "-k", "--colsep", " +", "printf", "[%s]", "{3}", "{1}", ":::", "x  y   z"])
        #expect(regex.output == "[z][x]", "\(regex.error)")
        // A Latin-1 line: the separator regex still finds the spaces, and the é stays one byte.
        let latin1 = Data("caf".utf8) + Data([0xE9]) + Data(" \t bar\n".utf8)
        let bytes = try await pool(["run", "-k", "--colsep", "\\s+", "printf", "%s|", "{2}", "{1}"], standardInputBytes: latin1)
        #expect(bytes.outputBytes == Data("bar|caf".utf8) + Data([0xE9]) + Data("|".utf8), "\(bytes.error)")
        let named = try await pool(["run", "-k", "--header", ":", "echo", "{size}-{color}", ":::", "color", "red", ":::", "size", "S", "M"])
        #expect(named.output == "S-red\nM-red\n", "\(named.error)")
        // Without --pipe, as in GNU parallel, a header that is a regular expression is the first line.
        let headerRegex = try await pool(["run", "-k", "--header", "^#", "echo", "{size}", ":::", "size", "S"])
        #expect(headerRegex.output == "S\n", "\(headerRegex.error)")
        for bad in [["--colsep", "("], ["--colsep", "x*"], ["--header", "0"], ["--header", "("]] {
            let result = try await pool(["run"] + bad + ["echo", ":::", "a"])
            #expect(result.status == 2, "\(bad): \(result.error)")
            #expect(result.error.contains(bad[0]), "\(result.error)")
        }
    }

    @Test("--tagstring, --nice, --shuf, --delay and --halt ...,success=N do what GNU parallel's do")
    func smallerOptions() async throws {
        let tagged = try await pool(["run", "-k", "--tagstring", "<{2}:{#}>", "echo", ":::", "a", "b", ":::", "x"])
        #expect(tagged.output == "<x:1>\ta x\n<x:2>\tb x\n", "\(tagged.error)")
        let nice = try await pool(["run", "--nice", "7", "sh", "-c", "nice", ":::", "1"])
        #expect(nice.output == "7\n", "\(nice.error)")
        let inputs = (1...20).map(String.init)
        let shuffled = try await pool(["run", "-k", "--shuf", "echo", "{#}", "{}", ":::"] + inputs)
        let lines = shuffled.output.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
        #expect(lines.map { $0[0] } == inputs, "{#} numbers the jobs in the order they run")
        #expect(lines.map { $0[1] }.sorted() == inputs.sorted(), "every input once")
        #expect(lines.map { $0[1] } != inputs, "shuffled (20 inputs: in order by chance once in 20!)")
        // The first success stops the run, and the exit status says it succeeded.
        let success = try await pool(["run", "-j", "1", "--halt", "now,success=1", "sh", "-c", "echo $1; exit $2", "_", ":::", "a", "b", "c", ":::+", "1", "0", "0"])
        #expect(success.output == "a\nb\n", "\(success.error)")
        #expect(success.status == 0)
        // Each job prints when it started: with --delay 1, a second apart however many workers
        // are free. (The spacing is of the jobs' hand-out; a busy machine starts a process a
        // little late now and then, so each gap may fall short by a quarter of a second.)
        let delayed = try await pool(["run", "-k", "-j", "3", "--delay", "1", "sh", "-c", "date +%s%N", ":::", "1", "2", "3"])
        let starts = delayed.output.split(separator: "\n").compactMap { Int($0) }
        #expect(starts.count == 3, "\(delayed.output) \(delayed.error)")
        for (earlier, later) in zip(starts, starts.dropFirst()) {
            #expect(later - earlier >= 750_000_000, "started \(later - earlier) ns apart")
        }
        for bad in [["--nice", "20"], ["--delay", "-1"], ["--delay", "inf"], ["--halt", "now,success=0"], ["--halt", "later,success=1"]] {
            let result = try await pool(["run"] + bad + ["echo", ":::", "a"])
            #expect(result.status == 2, "\(bad): \(result.error)")
        }
    }

    @Test("--pipe gives each job a block of stdin, cut where records end; no byte is lost or repeated")
    func pipe() async throws {
        let numbers = (1...20_000).map { "\($0)\n" }.joined()
        // Blocks in order with -k: together, exactly the input.
        let copied = try await pool(["run", "--pipe", "--block", "10k", "-k", "cat"], standardInput: numbers)
        #expect(copied.output == numbers, "\(copied.error)")
        // Each block ends at a record's end: every job counts whole lines, about 10k of them.
        let counted = try await pool(["run", "--pipe", "--block", "10k", "-k", "wc", "-c"], standardInput: numbers)
        let sizes = counted.output.split(separator: "\n").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        #expect(sizes.reduce(0, +) == numbers.utf8.count)
        #expect(sizes.dropLast().allSatisfy { (9_000...10_240).contains($0) }, "\(sizes)")
        // A record longer than a block is one block; the last record needs no end.
        let long = String(repeating: "x", count: 5000)
        let records = try await pool(
            ["run", "--pipe", "--block", "1k", "-k", "sh", "-c", "printf '[%s]' \"$(cat)\""], standardInput: "a\n" + long + "\nb\nc")
        #expect(records.output == "[a][\(long)][b\nc]", "\(records.error)")
        // A command too long for the room kept before each block: the block is copied instead.
        let longWord = String(repeating: "w", count: 5000)
        let longCommand = try await pool(["run", "--pipe", "--block", "10k", "-k", "sh", "-c", "cat", longWord], standardInput: numbers)
        #expect(longCommand.output == numbers, "\(longCommand.error)")
        // Empty input: no job.
        let empty = try await pool(["run", "--pipe", "-k", "echo", "ran"], standardInput: "")
        #expect(empty.output.isEmpty && empty.status == 0)
        // -N records per block; --recstart cuts only where a record starts too.
        let perThree = try await pool(["run", "--pipe", "-N", "3", "-k", "wc", "-l"], standardInput: (1...10).map { "\($0)\n" }.joined())
        #expect(perThree.output.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) } == ["3", "3", "3", "1"])
        let started = try await pool(
            ["run", "--pipe", "--recstart", ">", "-N", "1", "-k", "sh", "-c", "printf '<%s>' \"$(cat)\""], standardInput: ">a\nb\n>c\n")
        #expect(started.output == "<>a\nb><>c>", "\(started.error)")
        // Binary input, cut at NULs: byte for byte.
        var binary = Data()
        for index in 0..<200_000 { binary.append(UInt8(truncatingIfNeeded: index &* 7919 >> 3)) }
        let bytes = try await pool(["run", "--pipe", "--block", "4k", "--recend", "\\0", "-k", "cat"], standardInputBytes: binary)
        #expect(bytes.outputBytes == binary, "\(bytes.error)")
        for bad in [["--block", "0"], ["--block", "1T"], ["--recend", "", "--recstart", ""]] {
            let result = try await pool(["run", "--pipe"] + bad + ["cat"], standardInput: "")
            #expect(result.status == 2, "\(bad): \(result.error)")
        }
        let withSource = try await pool(["run", "--pipe", "cat", ":::", "a"])
        #expect(withSource.status == 2)
        let shuffled = try await pool(["run", "--pipe", "--shuf", "cat"], standardInput: "a\n")
        #expect(shuffled.status == 2, "\(shuffled.error)")
        // A record longer than a block, then records that start with --recstart: each is a
        // block of its own, although the first's end was read before the next one's start.
        let longRecord = "BEGIN" + String(repeating: "a", count: 65_546) + "\n"
        let afterLong = try await pool(
            ["run", "--pipe", "--recstart", "BEGIN", "--recend", "\\n", "--block", "10", "-k", "wc", "-c"], standardInput: longRecord + "BEGINb\nBEGINc\n")
        #expect(afterLong.output.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) } == ["65552", "7", "7"], "\(afterLong.error)")
    }

    @Test("with no command, each input is a command line, run by the shell as GNU parallel does")
    func inputsAreCommands() async throws {
        let given = try await pool(["run", "-k", ":::", "echo a", "echo b; echo c"])
        #expect(given.output == "a\nb\nc\n", "\(given.error)")
        let read = try await pool(["run", "-k"], standardInput: "echo x\necho y | tr y z\n")
        #expect(read.output == "x\nz\n", "\(read.error)")
        let combined = try await pool(["run", "-k", "--dry-run", ":::", "echo", "printf", ":::", "a", "b"])
        #expect(combined.output == "echo a\necho b\nprintf a\nprintf b\n")
    }

    @Test("--pipe --cat gives each job its block as a temporary file in {}, removed when it ends")
    func pipeCat() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let result = try await pool(
            ["run", "--pipe", "-N", "4", "--cat", "-k", "sh", "-c", "wc -l < \"$1\"; test -f \"$1\" && test ! -t 0", "_", "{}"],
            standardInput: (1...10).map { "\($0)\n" }.joined(), environment: ["TMPDIR": directory.path])
        #expect(result.output.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) } == ["4", "4", "2"], "\(result.error)")
        #expect(result.status == 0)
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path).isEmpty, "no file left behind")
        let withoutPipe = try await pool(["run", "--cat", "cat", ":::", "a"])
        #expect(withoutPipe.status == 2)
    }

    @Test("--pipepart cuts a file by offsets, as GNU parallel does; no byte is lost or repeated")
    func pipePart() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        func file(_ name: String, _ contents: Data) throws -> String {
            let path = directory.appendingPathComponent(name).path
            try contents.write(to: URL(fileURLWithPath: path))
            return path
        }
        let numbers = (1...20_000).map { "\($0)\n" }.joined()
        let numbered = try file("numbers", Data(numbers.utf8))
        let copied = try await pool(["run", "--pipepart", "-a", numbered, "--block", "10k", "-k", "cat"])
        #expect(copied.output == numbers, "\(copied.error)")
        // A block is at least --block bytes and ends at the first record end after that (10k
        // is 10,000 bytes, as in GNU parallel; 10K would be 10,240).
        let counted = try await pool(["run", "--pipepart", "-a", numbered, "--block", "10k", "-k", "wc", "-c"])
        let sizes = counted.output.split(separator: "\n").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        #expect(sizes.reduce(0, +) == numbers.utf8.count)
        #expect(sizes.dropLast().allSatisfy { (10_000...10_006).contains($0) }, "\(sizes)")
        // The expected outputs are GNU parallel 20221122's for the same command lines.
        let small = try file("small", Data("id\n1\n22\n333\n4444\n55555\n".utf8))
        let show = ["sh", "-c", "echo \"<$(cat | tr '\\n' ,)>\""]
        let plain = try await pool(["run", "--pipepart", "-a", small, "--block", "3", "-k"] + show)
        #expect(plain.output == "<id,1,>\n<22,333,>\n<4444,>\n<55555,>\n", "\(plain.error)")
        let headed = try await pool(["run", "--pipepart", "--header", ":", "-a", small, "--block", "5", "-k"] + show)
        #expect(headed.output == "<id,1,22,333,>\n<id,4444,55555,>\n", "\(headed.error)")
        // A record longer than a block, no final record end, binary cut at NULs, :::: files.
        let long = String(repeating: "x", count: 5000)
        let ragged = try file("ragged", Data(("a\n" + long + "\nb\nc").utf8))
        let records = try await pool(["run", "--pipepart", "--block", "1k", "-k", "sh", "-c", "printf '[%s]' \"$(cat)\"", "::::", ragged])
        #expect(records.output == "[a\n\(long)][b\nc]", "\(records.error)")
        var binary = Data()
        for index in 0..<200_000 { binary.append(UInt8(truncatingIfNeeded: index &* 7919 >> 3)) }
        let binaryFile = try file("binary", binary)
        let bytes = try await pool(["run", "--pipepart", "-a", binaryFile, "--block", "4k", "--recend", "\\0", "-k", "cat"])
        #expect(bytes.outputBytes == binary, "\(bytes.error)")
        let empty = try await pool(["run", "--pipepart", "-a", try file("empty", Data()), "echo", "ran"])
        #expect(empty.output.isEmpty && empty.status == 0)
        // With --cat, {} is a file holding the header and the block.
        let asFile = try await pool(["run", "--pipepart", "--header", "1", "--cat", "-a", small, "--block", "5", "-k", "sh", "-c", "tr '\\n' , < \"$1\"; echo", "_", "{}"])
        #expect(asFile.output == "id,1,22,333,\nid,4444,55555,\n", "\(asFile.error)")
        // A record start alone needs no record end before it (GNU parallel's output).
        let started = try file("started", Data("BEGINaaaBEGINbbbBEGINccc".utf8))
        let byStart = try await pool(["run", "--pipepart", "-a", started, "--recstart", "BEGIN", "--block", "3", "-k", "sh", "-c", "cat; echo"])
        #expect(byStart.output == "BEGINaaa\nBEGINbbb\nBEGINccc\n", "\(byStart.error)")
        // Files are opened one at a time: more files than descriptors are cut.
        var many: [String] = []
        for index in 1...60 { many.append(try file("many\(index)", Data("line\(index)\n".utf8))) }
        let manyFiles = try await pool(["run", "--pipepart", "-j", "1", "-k", "cat", "::::"] + many, launcher: ["/usr/bin/prlimit", "--nofile=40"])
        #expect(manyFiles.output == (1...60).map { "line\($0)\n" }.joined(), "\(manyFiles.error)")
        let missing = try await pool(["run", "--pipepart", "-a", directory.appendingPathComponent("absent").path, "cat"])
        #expect(missing.status == 255 && missing.error.contains("absent"), "\(missing.error)")
        for bad in [[":::", "a"], ["-a", "-"], ["-a", directory.path], ["-a", numbered, "-N", "2"]] {
            let result = try await pool(["run", "--pipepart", "cat"] + bad, standardInput: "")
            #expect(result.status == 2, "\(bad): \(result.error)")
        }
    }

    @Test("--header with --pipe puts the header before every block")
    func pipeHeader() async throws {
        // GNU parallel 20221122 prints the same for these command lines.
        let show = ["sh", "-c", "echo \"<$(cat | tr '\\n' ,)>\""]
        let regex = try await pool(["run", "--pipe", "-N", "1", "--header", "h\\n", "-k"] + show, standardInput: "h\nx1\nx2\nx3\n")
        #expect(regex.output == "<h,x1,>\n<h,x2,>\n<h,x3,>\n", "\(regex.error)")
        let lines = try await pool(["run", "--pipe", "--block", "6", "--header", "2", "-k"] + show, standardInput: "a\nb\n1\n2\n3\n4\n5\n")
        #expect(lines.output == "<a,b,1,2,3,>\n<a,b,4,5,>\n", "\(lines.error)")
        let bad = try await pool(["run", "--pipe", "--header", "(", "cat"], standardInput: "")
        #expect(bad.status == 2)
    }

    @Test("--fifo gives each job its block through a named pipe in {}; a command that never opens it still ends")
    func pipeFifo() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let numbers = (1...10).map { "\($0)\n" }.joined()
        let result = try await pool(
            ["run", "--pipe", "-N", "4", "--fifo", "-k", "sh", "-c", "test -p \"$1\" && wc -l < \"$1\"", "_", "{}"],
            standardInput: numbers, environment: ["TMPDIR": directory.path])
        #expect(result.output.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) } == ["4", "4", "2"], "\(result.error)")
        #expect(result.status == 0)
        // Larger than a pipe's buffer, read as it is written.
        let big = (1...200_000).map { "\($0)\n" }.joined()
        let copied = try await pool(["run", "--pipe", "--block", "600k", "--fifo", "-k", "cat", "{}"], standardInput: big, environment: ["TMPDIR": directory.path])
        #expect(copied.output == big, "\(copied.error)")
        // As in GNU parallel, {} is added to a command without it (where GNU parallel waits
        // for ever for a reader).
        let unopened = try await pool(["run", "--pipe", "-N", "5", "--fifo", "-k", "echo", "done"], standardInput: numbers, environment: ["TMPDIR": directory.path])
        let lines = unopened.output.split(separator: "\n")
        #expect(lines.count == 2 && lines.allSatisfy { $0.hasPrefix("done \(directory.path)/pool-fifo-") && $0.hasSuffix("/input") }, "\(unopened.output)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path).isEmpty, "no pipe left behind")
        let withoutPipe = try await pool(["run", "--fifo", "cat", ":::", "a"])
        #expect(withoutPipe.status == 2)
    }

    @Test("a --cat or --fifo job stopped by --timeout leaves no file or pipe behind")
    func temporaryFilesOfTimedOutJobs() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        for passing in ["--cat", "--fifo"] {
            // The shell opens {} and then sleeps on it: only the timeout ends the job.
            let result = try await pool(
                ["run", "--pipe", "-N", "1", "-j", "2", "--timeout", "1", passing, "sleep 30 < {}"], standardInput: "a\nb\n",
                environment: ["TMPDIR": directory.path])
            #expect(result.status == 2, "\(passing): \(result.error)")
            #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path).isEmpty, "\(passing): nothing left behind")
        }
    }

    @Test("--memfree starts no job while less memory is free, and says so")
    func memoryFloor() async throws {
        let enough = try await pool(["run", "--memfree", "1K", "-k", "echo", ":::", "a", "b"])
        #expect(enough.output == "a\nb\n", "\(enough.error)")
        for bad in ["0", "x", "2E"] {
            let result = try await pool(["run", "--memfree", bad, "echo", ":::", "a"])
            #expect(result.status == 2, "\(bad): \(result.error)")
        }
        // No machine has an exbibyte free: the job waits until the run is interrupted.
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Binaries.directory + "/pool")
        process.arguments = ["run", "--memfree", "1E", "echo", "ran", ":::", "a"]
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        let said = try await onDedicatedThread { () -> String in
            var text = ""
            while !text.contains("\n") {
                let chunk = errors.fileHandleForReading.availableData
                if chunk.isEmpty { break }
                text += String(decoding: chunk, as: UTF8.self)
            }
            return text
        }
        #expect(said.contains("waiting to start the next job until 1152921504606846976 bytes of memory are free (--memfree)"), "\(said)")
        kill(process.processIdentifier, SIGINT)
        let (status, printed) = try await onDedicatedThread { () -> (Int32, Data) in
            let printed = output.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return (process.terminationStatus, printed)
        }
        #expect(printed.isEmpty, "no job ran")
        #expect(status == 130)
    }

    @Test("-m and -X spread the inputs evenly over the job slots, as GNU parallel does")
    func spreadOverSlots() async throws {
        // GNU parallel 20221122 prints the same for these command lines.
        let repeated = try await pool(["run", "-k", "--dry-run", "-j", "3", "-X", "echo", "a{}b", ":::", "1", "2", "3", "4", "5", "6", "7"])
        #expect(repeated.output == "echo a1b a2b a3b\necho a4b a5b a6b\necho a7b\n", "\(repeated.error)")
        let read = try await pool(["run", "-k", "--dry-run", "-j", "4", "-m", "echo"], standardInput: (1...10).map { "\($0)\n" }.joined())
        #expect(read.output == "echo 1 2 3\necho 4 5 6\necho 7 8 9\necho 10\n", "\(read.error)")
        let one = try await pool(["run", "-k", "--dry-run", "-j", "1", "-m", "echo", ":::", "1", "2", "3"])
        #expect(one.output == "echo 1 2 3\n")
    }

    @Test("the last input needs no delimiter after it; -d takes any bytes as the delimiter")
    func lastInputAndDelimiters() async throws {
        let unterminated = try await pool(["run", "-k", "echo"], standardInput: "a\nb")
        #expect(unterminated.output == "a\nb\n", "\(unterminated.error)")
        #expect(unterminated.status == 0)
        let map = try await pool(["map", "--job", "echo", "-k"], standardInput: "\"a\"\n\"b\"")
        #expect(map.output == "{\"line\":1,\"output\":\"a\"}\n{\"line\":2,\"output\":\"b\"}\n", "\(map.error)")
        let multiByte = try await pool(["run", "-k", "-d", "XY", "echo"], standardInput: "aaXYbXcXY\nd")
        #expect(multiByte.output == "aa\nbXc\n\nd\n", "\(multiByte.error)")
        let tab = try await pool(["run", "-k", "-d", "\\t", "echo"], standardInput: "p\tq\t")
        #expect(tab.output == "p\nq\n", "\(tab.error)")
        let empty = try await pool(["run", "-d", "", "echo"])
        #expect(empty.status == 2)
    }

    @Test("an input with a NUL byte fails its job alone, saying why")
    func nulInInput() async throws {
        let result = try await pool(["run", "-k", "echo"], standardInputBytes: Data("a\0b\nc\n".utf8))
        #expect(result.output == "c\n")
        #expect(result.error.contains("contains a NUL byte"), "\(result.error)")
        #expect(result.status == 1)
    }

    @Test("absurd numbers are usage errors naming the option, never a crash", arguments: [
        ["--timeout", "inf"], ["--timeout", "nan"], ["--timeout", "1e300"], ["--timeout", "9223372036854775.807"],
        ["--timeout", "-1"], ["--timeout", "0"], ["-j", "inf%"], ["-j", "1e300%"], ["-j", "nan%"], ["-j", "0"], ["-j", "-3"],
        ["--max-output", "0"], ["--max-output", "4G"], ["--max-output", "-1"], ["--max-output", "1e9"], ["--max-output", "9223372036854775807K"],
        ["-n", "-1"], ["-n", "99999999999999999999"], ["-N", "x"], ["-s", "0"], ["-s", "3000000"], ["--max-chars", "-5"],
    ])
    func absurdNumbers(option: [String]) async throws {
        let result = try await pool(["run"] + option + ["echo", ":::", "a"])
        #expect(result.status == 2, "\(option): \(result.error)")
        #expect(result.error.hasPrefix("pool: \(option[0])") || result.error.contains(option[0]), "\(result.error)")
        #expect(result.output.isEmpty, "nothing runs")
    }

    @Test("a SIGKILLed pool run leaves none of its commands running")
    func commandsDieWithTheCoordinator() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        for name in ["a", "b"] { #expect(mkfifo(directory.path + "/" + name, 0o600) == 0) }
        // Each command says its pid through a FIFO of its own, then becomes a long sleep.
        let sleepers = try await onDedicatedThread { () throws -> (pool: Int32, commands: [Int32]) in
            let process = Process()
            process.executableURL = URL(fileURLWithPath: Binaries.directory + "/pool")
            process.arguments = ["run", "-j", "2", "sh", "-c", "echo $$ > \(directory.path)/$1; exec sleep 77", "sh", ":::", "a", "b"]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            process.standardInput = FileHandle.nullDevice
            try process.run()
            // Opening a FIFO for reading waits for its writer: the command has started.
            let pids = try ["a", "b"].map { name -> Int32 in
                guard let fifo = FileHandle(forReadingAtPath: directory.path + "/" + name) else { return -1 }
                let text = String(decoding: fifo.readDataToEndOfFile(), as: UTF8.self)
                try fifo.close()
                return Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
            }
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            return (process.processIdentifier, pids)
        }
        #expect(sleepers.commands.allSatisfy { $0 > 0 })
        for pid in sleepers.commands {
            // A pidfd becomes readable when its process ends (the command is not our child, so
            // this waits for the event itself, not for a time). The bound leaves room for a
            // loaded machine; the worker takes its group down at once.
            let pidfd = mp_pidfd_open(pid)
            guard pidfd >= 0 else {
                #expect(errno == ESRCH, "pidfd_open failed: \(errno)")
                continue
            }
            var entry = pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&entry, 1, 10_000)
            close(pidfd)
            #expect(ready == 1, "command \(pid) was still running 10 s after pool \(sleepers.pool) was killed")
        }
    }
}

/// The tests that run `pool` as the user `nobody`, under a process limit. One at a time: the
/// limit counts all of that user's processes and threads, whichever test started them.
@Suite("The pool command line as the user nobody", .serialized, .timeLimit(.minutes(2)),
       .enabled(if: getuid() == 0, "needs root to become nobody"))
struct ProcessLimitTests {
    /// `pool` and `pool-worker` copied where the user `nobody` can run them (a build folder
    /// under /root is out of its reach).
    static let binariesForNobody: String = {
        let directory = "/tmp/pool-nobody-\(getpid())"
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        for name in ["pool", "pool-worker"] {
            // Written through a close-on-exec descriptor: a child another test starts meanwhile
            // must not inherit it open for writing, or running the copy fails with ETXTBSY.
            let path = directory + "/" + name
            try? FileManager.default.removeItem(atPath: path)
            let contents = FileManager.default.contents(atPath: Binaries.directory + "/" + name) ?? Data()
            let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o755)
            contents.withUnsafeBytes { bytes in
                var offset = 0
                while offset < bytes.count {
                    let written = write(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
                    if written <= 0 { break }
                    offset += written
                }
            }
            close(descriptor)
        }
        chmod(directory, 0o755)
        return directory
    }()

    /// Runs the `pool` binary as the user `nobody` under a process limit of `processes`: the
    /// limit counts every process and thread of the user, which root would be exempt from.
    private func poolAsNobody(processes: Int, _ arguments: [String]) async throws -> PoolRun {
        try await pool(
            arguments, standardInputBytes: nil, in: URL(fileURLWithPath: Self.binariesForNobody),
            launcher: ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/prlimit", "--nproc=\(processes)"],
            poolPath: Self.binariesForNobody + "/pool")
    }

    @Test("a process limit too low for a pool is an error naming RLIMIT_NPROC, never a hang or a trap", arguments: [1, 3, 4, 6])
    func processLimitTooLow(processes: Int) async throws {
        let result = try await poolAsNobody(processes: processes, ["run", "-j", "4", "echo", ":::", "1", "2", "3"])
        #expect(result.status == 255, "\(result.error)")
        #expect(result.error.hasPrefix("pool: "), "\(result.error)")
        #expect(result.error.contains("RLIMIT_NPROC (processes and threads per user) is \(processes)"), "\(result.error)")
        #expect(result.error.contains("Resource temporarily unavailable"), "\(result.error)")
        #expect(!result.error.contains("Fatal error"), "\(result.error)")
    }

    @Test("--results where nobody may write: an error naming the directory and the reason, before any job")
    func resultsWithoutPermission() async throws {
        let directory = "/tmp/pool-read-only-\(getpid())"
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        chmod(directory, 0o555)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let result = try await poolAsNobody(processes: 1000, ["run", "--results", directory + "/results/deeper", "echo", ":::", "a"])
        #expect(result.status == 255)
        #expect(result.output.isEmpty)
        #expect(result.error == "pool: cannot create the results directory \(directory)/results: Permission denied\n")
    }

    @Test("-j beyond the process limit runs every job on the workers it could start, and says so")
    func moreWorkersThanTheProcessLimit() async throws {
        let inputs = (1...20).map(String.init)
        let result = try await poolAsNobody(processes: 60, ["run", "-k", "-j", "1000", "echo", ":::"] + inputs)
        #expect(result.status == 0, "\(result.error)")
        #expect(result.output == inputs.map { $0 + "\n" }.joined())
        #expect(result.error.hasPrefix("pool: running "), "\(result.error)")
        #expect(result.error.contains("workers, not 1000: spawnFailed"), "\(result.error)")
        #expect(result.error.contains("RLIMIT_NPROC (processes and threads per user) is 60"), "\(result.error)")
    }

}
