import Foundation
import Multiprocessing

/// Counts the primes in a range by trial division: deliberately CPU-bound.
struct CountPrimes: Job {
    static let name = "count-primes"

    func run(_ range: ClosedRange<Int>) throws -> Int {
        var count = 0
        for candidate in range where Self.isPrime(candidate) { count += 1 }
        return count
    }

    static func isPrime(_ n: Int) -> Bool {
        if n < 2 { return false }
        if n < 4 { return true }
        if n % 2 == 0 || n % 3 == 0 { return false }
        var divisor = 5
        while divisor * divisor <= n {
            if n % divisor == 0 || n % (divisor + 2) == 0 { return false }
            divisor += 6
        }
        return true
    }
}

/// `primes [LIMIT] [--workers N]`: counts the primes below LIMIT (default 20,000,000) on N
/// worker processes (default: every core), then again on one worker, and prints both times.
@main
struct Primes {
    static func main() async throws {
        // In a process the pool spawned, this serves jobs and never returns.
        try await Worker.serveIfSpawned(jobs: [CountPrimes.self])

        var limit = 20_000_000
        var workers = ProcessInfo.processInfo.activeProcessorCount
        var arguments = CommandLine.arguments.dropFirst()
        while let argument = arguments.popFirst() {
            switch argument {
            case "--workers", "-j":
                guard let value = arguments.popFirst().flatMap(Int.init), value > 0 else { usage("--workers needs a positive number") }
                workers = value
            case "--help", "-h":
                print("usage: primes [LIMIT] [--workers N]")
                return
            default:
                guard let value = Int(argument.replacingOccurrences(of: "_", with: "")), value > 1 else { usage("unknown argument \(argument)") }
                limit = value
            }
        }

        let chunkSize = 100_000
        let chunks = stride(from: 0, to: limit, by: chunkSize).map { $0...min($0 + chunkSize, limit) - 1 }

        let (parallelCount, parallelTime) = try await count(chunks, workers: workers)
        let (serialCount, serialTime) = try await count(chunks, workers: 1)
        precondition(parallelCount == serialCount, "the two runs disagree: \(parallelCount) vs \(serialCount)")

        print("primes below \(limit): \(parallelCount)")
        print("\(workers) workers: \(format(parallelTime))")
        print("1 worker:  \(format(serialTime))")
        print("speedup:   \(String(format: "%.2f", seconds(serialTime) / seconds(parallelTime)))x")
    }

    static func count(_ chunks: [ClosedRange<Int>], workers: Int) async throws -> (Int, Duration) {
        let clock = ContinuousClock()
        var total = 0
        let elapsed = try await clock.measure {
            total = try await withProcessPool(workers: workers, arguments: []) { pool in
                try await pool.map(CountPrimes.self, chunks).reduce(0, +)
            }
        }
        return (total, elapsed)
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    static func format(_ duration: Duration) -> String { String(format: "%.3f s", seconds(duration)) }

    static func usage(_ message: String) -> Never {
        FileHandle.standardError.write(Data("primes: \(message)\nusage: primes [LIMIT] [--workers N]\n".utf8))
        exit(2)
    }
}
