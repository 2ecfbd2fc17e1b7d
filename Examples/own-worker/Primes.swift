import Multiprocessing

struct CountPrimes: Job {
    static let name = "count-primes"            // optional: defaults to the type's name
    func run(_ range: ClosedRange<Int>) -> Int {
        range.count(where: isPrime)
    }
}

/// Trial division: slow on purpose, so that there is work to spread over the workers.
func isPrime(_ n: Int) -> Bool {
    guard n >= 2 else { return false }
    var divisor = 2
    while divisor * divisor <= n {
        if n.isMultiple(of: divisor) { return false }
        divisor += 1
    }
    return true
}

@main struct Primes {
    static func main() async throws {
        // In a process the pool spawned, this serves jobs and never returns.
        try await Worker.serveIfSpawned(jobs: [CountPrimes.self])

        let chunks = stride(from: 0, to: 10_000_000, by: 100_000).map { $0...($0 + 99_999) }
        try await withProcessPool(workers: 4) { pool in     // re-executes this program as workers
            let counts = try await pool.map(CountPrimes.self, chunks)            // ordered [Int]
            print("below 10,000,000:", counts.reduce(0, +))

            let future = try await pool.submit(CountPrimes.self, 1...1_000)      // JobFuture<Int>
            print("up to 1,000:", try await future.value)

            for try await (index, count) in pool.mapUnordered(CountPrimes.self, chunks) {
                print("chunk", index, count)                                     // as jobs finish
            }

            let results = try await pool.mapResults(CountPrimes.self, chunks)    // [Result<Int, ProcessPoolError>]
            for case .failure(let error) in results { print(error) }
        }
    }
}
