import Multiprocessing

struct CountPrimes: Job {
    static let name = "count-primes"
    func run(_ range: ClosedRange<Int>) -> Int {
        range.count(where: isPrime)
    }
}

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
        try await Worker.serveIfSpawned(jobs: [CountPrimes.self])
        let chunks = stride(from: 0, to: 10_000_000, by: 100_000).map { $0...($0 + 99_999) }
        let counts = try await withProcessPool(workers: 4) { pool in
            try await pool.map(CountPrimes.self, chunks)
        }
        print("primes below 10,000,000:", counts.reduce(0, +))
    }
}
