import Foundation
import Multiprocessing

/// n → n mod 251, as a byte: a tiny job whose output keeps the result array small, so the
/// figure is the pool's own memory, not the caller's array.
struct Reduce: Job {
    static let name = "reduce"
    func run(_ n: Int) -> UInt8 { UInt8(n % 251) }
}

/// Sleeps for the given milliseconds: a job for the timeout figure.
struct Sleep: Job {
    static let name = "sleep"
    func run(_ milliseconds: Int) async throws -> Int {
        try await Task.sleep(for: .milliseconds(milliseconds))
        return milliseconds
    }
}

try await Worker.serveIfSpawned(jobs: [Reduce.self, Sleep.self])

func peakResidentMiB() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_maxrss) / 1024  // Linux reports KiB
}

func currentResidentMiB() -> Double {
    guard let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8),
          let pages = statm.split(separator: " ").dropFirst().first.flatMap({ Double($0) }) else { return -1 }
    return pages * Double(sysconf(Int32(_SC_PAGESIZE))) / 1_048_576
}

func milliseconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) * 1000 + Double(duration.components.attoseconds) / 1e15
}

let arguments = CommandLine.arguments.dropFirst()
let inputCount = arguments.first.flatMap { Int($0) } ?? 10_000_000
let clock = ContinuousClock()

// 1. Memory: map over lazily produced inputs.
let startResident = currentResidentMiB()
var checksum = 0
let elapsed = try await clock.measure {
    try await withProcessPool(workers: 2, arguments: []) { pool in
        let outputs = try await pool.map(Reduce.self, (0..<inputCount).lazy.map { $0 })
        precondition(outputs.count == inputCount)
        checksum = outputs.reduce(0) { $0 &+ Int($1) }
    }
}
let peak = peakResidentMiB()
print("map over \(inputCount) lazily produced inputs, 2 workers (output: one byte each)")
print(String(format: "  coordinator resident memory: %.1f MiB at start, %.1f MiB peak (limit 100 MiB)", startResident, peak))
print(String(format: "  for scale: the inputs as an [Int] would take %.1f MiB; the outputs take %.1f MiB", Double(inputCount * 8) / 1_048_576, Double(inputCount) / 1_048_576))
print(String(format: "  %.2f s, %.2fM jobs/s (checksum %d)", milliseconds(elapsed) / 1000, Double(inputCount) / (milliseconds(elapsed) / 1000) / 1e6, checksum))

// 2. Timeouts: from a timeout's expiry to the job's failure, which is delivered after the
// worker has been terminated and reaped.
var lags: [Double] = []
var configuration = ProcessPoolConfiguration(workerCount: 1, arguments: [])
configuration.forwardsWorkerStandardError = false
try await withProcessPool(configuration: configuration) { pool in
    for _ in 0..<15 {
        _ = try await pool.run(Sleep.self, 0)  // a fresh worker is up and idle
        let timeout = Duration.milliseconds(100)
        let start = clock.now
        do {
            _ = try await pool.run(Sleep.self, 10_000, options: JobOptions(timeout: timeout))
        } catch let error as ProcessPoolError where error.code == .timedOut {
            lags.append(milliseconds(clock.now - start - timeout))
        }
    }
}
lags.sort()
print("timeout expiry → worker gone and job failed (\(lags.count) runs, 100 ms timeout, SIGTERM):")
print(String(format: "  median %.2f ms, min %.2f ms, max %.2f ms", lags[lags.count / 2], lags.first!, lags.last!))
