import Foundation
import Multiprocessing

/// n → n + 1: as small as a job gets, so the figure is the pool's own cost per job.
struct Increment: Job {
    static let name = "increment"
    func run(_ n: Int) -> Int { n &+ 1 }
}

// The pool re-executes this program as its workers.
try await Worker.serveIfSpawned(jobs: [Increment.self])

let arguments = CommandLine.arguments.dropFirst()
let jobCount = arguments.first.flatMap { Int($0) } ?? 1_000_000
let workers = arguments.dropFirst().first.flatMap { Int($0) } ?? 2
let repetitions = 5
let clock = ContinuousClock()

func seconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
}

func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }

print("map over \(jobCount) tiny Int→Int jobs, \(workers) workers, median of \(repetitions) runs")

// Baseline: the same work in this process, one core, no IPC.
// Like `map`, it reads a sequence and builds an array of outputs.
var loopRates: [Double] = []
for _ in 0..<repetitions {
    let job = Increment()
    var outputs: [Int] = []
    let elapsed = clock.measure {
        outputs = (0..<jobCount).map { job.run($0) }
    }
    precondition(outputs.count == jobCount && outputs[jobCount - 1] == jobCount)
    loopRates.append(Double(jobCount) / seconds(elapsed))
}

var poolRates: [Double] = []
var startTimes: [Double] = []
var roundTrips: [Double] = []
try await withProcessPool(workers: workers, arguments: []) { pool in
    let start = clock.now
    _ = try await pool.run(Increment.self, 0)
    startTimes.append(seconds(clock.now - start))
    for _ in 0..<repetitions {
        var results: [Int] = []
        let elapsed = try await clock.measure {
            results = try await pool.map(Increment.self, 0..<jobCount)
        }
        precondition(results.count == jobCount && results[jobCount - 1] == jobCount)
        poolRates.append(Double(jobCount) / seconds(elapsed))
    }
    // One job at a time: the round trip of `run`.
    for input in 0..<2_100 {
        let start = clock.now
        let output = try await pool.run(Increment.self, input)
        if input >= 100 { roundTrips.append(seconds(clock.now - start)) }
        precondition(output == input + 1)
    }
}

func format(_ rate: Double) -> String { String(format: "%.2fM jobs/s", rate / 1e6) }
print("in-process loop (baseline):   \(format(median(loopRates)))")
print("pool.map:                     \(format(median(poolRates)))  (runs: \(poolRates.map { String(format: "%.2fM", $0 / 1e6) }.joined(separator: ", ")))")
print(String(format: "pool start to first result:   %.1f ms", startTimes[0] * 1000))
let sortedTrips = roundTrips.sorted()
print(String(format: "run round trip:               p50 %.1f µs, p99 %.1f µs", sortedTrips[sortedTrips.count / 2] * 1e6, sortedTrips[sortedTrips.count * 99 / 100] * 1e6))
