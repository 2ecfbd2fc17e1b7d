import Foundation
import Multiprocessing

// The pool re-executes this program as its workers.
try await Worker.serveIfSpawned(jobs: [Increment.self, Crunch.self, Ingest.self, Emit.self])

let usage = """
usage: bench [--workers N] [--repetitions R] [--quick] [--only a,b,...] [--json FILE] [--svg FILE]

Runs the performance scenarios (a: tiny jobs, b: futures, c: latency, d: CPU-bound,
e: payload, f: start-up, g: command line, h: memory, i: --pipe, j: remote hosts over ssh)
for this pool and for the baselines (Python's ProcessPoolExecutor and multiprocessing.Pool,
TaskGroup, raw pipes, xargs -P, GNU parallel, cat | wc -l, ssh host cat), interleaved, and
prints a table of medians, ranges and ratios. A baseline that is not installed is skipped with
a note. Build the main package first (swift build -c release): scenarios g to j run its pool
and pool-worker binaries. Scenario j starts a private sshd on 127.0.0.1 and 127.0.0.2 for its
run, so it needs root and openssh-server; without them it is skipped with the reason.

  --workers N       workers for every pool (default 2)
  --repetitions R   runs of each contender (default 5)
  --quick           small sizes: a seconds-long smoke run
  --only LIST       only these scenarios
  --json FILE       also write the results as JSON (default: Benchmarks/results/bench-results.json)
  --svg FILE        also write the chart (default: Benchmarks/results/bench-results.svg)
"""

var arguments = Array(CommandLine.arguments.dropFirst())
if arguments.first == "pipe-peer", let mode = arguments.dropFirst().first.flatMap(RawPipe.PeerMode.init(rawValue:)) {
    RawPipe.servePeer(mode)
}
if arguments.first == "memory-map", arguments.count == 3, let inputs = Int(arguments[1]), let workers = Int(arguments[2]) {
    try await memoryMap(inputs: inputs, workers: workers)
}

var workers = 2
var repetitions = 5
var quick = false
var only: Set<String>?
var jsonPath = Paths().benchmarks + "/results/bench-results.json"
var svgPath = Paths().benchmarks + "/results/bench-results.svg"
func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("bench: \(message)\n\(usage)\n".utf8))
    exit(2)
}
func number(_ text: String, for option: String) -> Int {
    guard let value = Int(text), value > 0 else { fail("\(option) needs a positive number, not '\(text)'") }
    return value
}
while let argument = arguments.first {
    arguments.removeFirst()
    func value() -> String {
        guard !arguments.isEmpty else { fail("\(argument) needs a value") }
        return arguments.removeFirst()
    }
    switch argument {
    case "--workers": workers = number(value(), for: argument)
    case "--repetitions": repetitions = number(value(), for: argument)
    case "--quick": quick = true
    case "--only": only = Set(value().split(separator: ",").map(String.init))
    case "--json": jsonPath = value()
    case "--svg": svgPath = value()
    case "-h", "--help":
        print(usage)
        exit(0)
    default: fail("unknown argument \(argument)")
    }
}

let sizes = quick ? Sizes.quick : Sizes()
let paths = Paths()
func log(_ line: String) { FileHandle.standardError.write(Data((line + "\n").utf8)) }

let machine = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?
    .split(separator: "\n").first { $0.hasPrefix("model name") }?
    .split(separator: ":").last.map { $0.trimmingCharacters(in: .whitespaces) } ?? "unknown CPU"
var result = SuiteResult(
    date: ISO8601DateFormatter().string(from: Date()), machine: "\(machine), \(ProcessInfo.processInfo.activeProcessorCount) cores",
    workers: workers, repetitions: repetitions, quick: quick, scenarios: [])
log("bench: \(workers) workers, \(repetitions) repetitions\(quick ? ", quick sizes" : ""), on \(result.machine)")
for scenario in try await scenarios(workers: workers, sizes: sizes, paths: paths) where only?.contains(scenario.id) ?? true {
    log("\(scenario.id). \(scenario.title)")
    for contender in scenario.contenders where contender.unavailable != nil {
        log("  skipped \(contender.names.joined(separator: ", ")): \(contender.unavailable!)")
    }
    result.scenarios.append(await run(scenario, repetitions: repetitions, log: log))
}
try? FileManager.default.removeItem(atPath: pipeInputFile)

print(table(result))
let encoder = JSONEncoder()
encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
for path in [jsonPath, svgPath] {
    try FileManager.default.createDirectory(atPath: URL(fileURLWithPath: path).deletingLastPathComponent().path, withIntermediateDirectories: true)
}
try encoder.encode(result).write(to: URL(fileURLWithPath: jsonPath))
try chart(result).write(toFile: svgPath, atomically: true, encoding: .utf8)
log("wrote \(jsonPath) and \(svgPath)")
