import Multiprocessing

/// Counts the primes in a range; shared by `prime-worker` and `prime-coordinator`.
public struct CountPrimes: Job {
    public static let name = "count-primes"

    public init() {}

    public func run(_ range: ClosedRange<Int>) -> Int {
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
