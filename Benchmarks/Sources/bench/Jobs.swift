import Foundation
import Multiprocessing

/// n → n + 1: as small as a job gets, so what is measured is the pool's own cost per job.
struct Increment: Job {
    static let name = "increment"
    func run(_ n: Int) -> Int { n &+ 1 }
}

/// A fixed amount of arithmetic (not a fixed time, so that contention shows): `rounds` steps
/// of a xorshift generator from `seed`. Calibrated by the suite to about 5 ms on one core.
/// Each job has its own seed, so no compiler can compute one result for all of them.
struct Crunch: Job {
    static let name = "crunch"
    func run(_ input: [Int]) -> UInt64 { crunch(input[0], seed: input[1]) }
}

@inline(never)
func crunch(_ rounds: Int, seed: Int) -> UInt64 {
    var state = 0x9E37_79B9_7F4A_7C15 ^ UInt64(truncatingIfNeeded: seed)
    for _ in 0..<rounds {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
    }
    return state
}

/// Takes a large input, returns its size: the payload travels coordinator → worker.
struct Ingest: Job {
    static let name = "ingest"
    func run(_ bytes: [UInt8]) -> Int { bytes.count }
}

/// Returns `count` bytes: the payload travels worker → coordinator.
struct Emit: Job {
    static let name = "emit"
    func run(_ count: Int) -> [UInt8] { [UInt8](repeating: 7, count: count) }
}
