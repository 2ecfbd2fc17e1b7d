import Multiprocessing
import Glibc

/// Returns `count` bytes: the payload travels worker → coordinator.
struct Emit: Job {
    static let name = "emit"
    func run(_ count: Int) -> [UInt8] { [UInt8](repeating: 7, count: count) }
}

/// Takes a large input, returns its size: the payload travels coordinator → worker.
struct Ingest: Job {
    static let name = "ingest"
    func run(_ bytes: [UInt8]) -> Int { bytes.count }
}

/// Returns its input: the payload travels both ways.
struct EchoBytes: Job {
    static let name = "echo-bytes"
    func run(_ bytes: [UInt8]) -> [UInt8] { bytes }
}

// The pool re-executes this program as its workers.
try await Worker.serveIfSpawned(jobs: [Emit.self, Ingest.self, EchoBytes.self])

// payload-figures [in|out|out-stream|echo] [jobs] [MiB]: MiB/s of each of 5 runs on a warm pool.
let arguments = Array(CommandLine.arguments.dropFirst())
let mode = arguments.first ?? "out"
let jobs = arguments.count > 1 ? Int(arguments[1]) ?? 64 : 64
let size = (arguments.count > 2 ? Int(arguments[2]) ?? 8 : 8) << 20
let clock = ContinuousClock()
// With PAYLOAD_FIGURES_HOST, the one worker runs behind an agent: "launcher" starts the agent
// here through `env` (the agent's and the envelopes' cost without a network), anything else
// is an ssh command line whose last word is the destination (e.g. "ssh -F config node1").
var configuration = ProcessPoolConfiguration(workerCount: 2, arguments: [])
if let host = getenv("PAYLOAD_FIGURES_HOST").map({ String(cString: $0) }) {
    let words = host.split(separator: " ").map(String.init)
    configuration.hosts = words == ["launcher"]
        ? [WorkerHost(.launcher(command: ["env"], name: "here"), slots: 1)]
        : [WorkerHost.ssh(words.last ?? "", slots: 1, command: Array(words.dropLast()))]
}

if mode == "latency" || mode == "latency-loop" {
    // One job at a time, from a task off the main actor: the round trip of `run`; with
    // "latency-loop", from a task on the pool's event-loop executor.
    try await Task.detached {
        try await withProcessPool(configuration: configuration) { pool in
            func measure() async throws {
                var trips: [Duration] = []
                for input in 0..<(jobs * 100 + 100) {
                    let start = clock.now
                    _ = try await pool.run(Emit.self, input & 7)
                    if input >= 100 { trips.append(clock.now - start) }
                }
                trips.sort()
                print("round trip p50", trips[trips.count / 2], "p99", trips[trips.count * 99 / 100])
            }
            if mode == "latency-loop" {
                try await withTaskExecutorPreference(pool.eventLoopExecutor) { try await measure() }
            } else {
                try await measure()
            }
        }
    }.value
    exit(0)
}

try await withProcessPool(configuration: configuration) { pool in
    _ = try await pool.run(Emit.self, 1)
    for _ in 0..<5 {
        let start = clock.now
        switch mode {
        case "echo":
            let payload = [UInt8](repeating: 3, count: size)
            let echoes = try await pool.map(EchoBytes.self, Array(repeating: payload, count: jobs))
            precondition(echoes.allSatisfy { $0.count == size })
        case "in":
            let payload = [UInt8](repeating: 3, count: size)
            let counts = try await pool.map(Ingest.self, Array(repeating: payload, count: jobs))
            precondition(counts.allSatisfy { $0 == size })
        case "out-stream":
            var received = 0
            for try await (_, output) in pool.mapUnordered(Emit.self, Array(repeating: size, count: jobs)) {
                received += output.count
            }
            precondition(received == jobs * size)
        default:
            let outputs = try await pool.map(Emit.self, Array(repeating: size, count: jobs))
            precondition(outputs.allSatisfy { $0.count == size })
        }
        let elapsed = clock.now - start
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        print(mode, Int(Double(jobs * size) / 1_048_576 / seconds), "MiB/s")
    }
}
