import Multiprocessing
import PrimeJobs

@main struct PrimeCoordinator {
    static func main() async throws {
        // The worker binary's path: `prime-coordinator .build/release/prime-worker`.
        let worker = CommandLine.arguments.dropFirst().first ?? "/usr/local/bin/prime-worker"
        let chunks = stride(from: 0, to: 100_000, by: 10_000).map { $0...($0 + 9_999) }
        let counts = try await withProcessPool(executable: worker) { pool in
            try await pool.map(CountPrimes.self, chunks)
        }
        print("primes below 100,000:", counts.reduce(0, +))
    }
}
