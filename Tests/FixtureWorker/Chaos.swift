import Foundation
import Multiprocessing

/// `chaos JOBS WORKERS RETRIES SEED`: runs JOBS spin jobs of 300 µs on WORKERS workers while a
/// killer SIGKILLs a random worker every 20–50 ms, then prints one line of counts for the test
/// (and for people): kills, successes, failures by code, lost and duplicated results, wrong
/// values, and this process's descriptors and children before and after.
func chaos(arguments: [String]) async throws {
    let jobs = arguments.count > 0 ? Int(arguments[0]) ?? 20_000 : 20_000
    let workers = arguments.count > 1 ? Int(arguments[1]) ?? 3 : 3
    let retries = arguments.count > 2 ? Int(arguments[2]) ?? 3 : 3
    var generator = SplitMix64(seed: arguments.count > 3 ? UInt64(arguments[3]) ?? 1 : 1)

    // Warm up what the runtime creates once per process, so descriptor counts compare.
    try await withProcessPool(workers: 1, arguments: []) { pool in _ = try await pool.run(Square.self, 1) }
    try await Task.sleep(for: .milliseconds(1))
    let descriptorsBefore = openDescriptors()

    var configuration = ProcessPoolConfiguration(workerCount: workers, arguments: [])
    configuration.maximumRetries = retries
    configuration.forwardsWorkerStandardError = false
    let inputs = (0..<jobs).map { [$0, 300] }
    var deliveries = [Int](repeating: 0, count: jobs)
    var wrong = 0
    var failures: [String: Int] = [:]
    var kills = 0
    let clock = ContinuousClock()
    let start = clock.now
    try await withProcessPool(configuration: configuration) { pool in
        let seed = generator.next()
        let killer = Task {
            var random = SplitMix64(seed: seed)
            var count = 0
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(20 + Int(random.next() % 31)))
                let pids = pool.workerProcessIDs
                guard !pids.isEmpty, !Task.isCancelled else { continue }
                kill(pids[Int(random.next() % UInt64(pids.count))], SIGKILL)
                count += 1
            }
            return count
        }
        if retries > 0 {
            // Unordered, so a duplicate or a missing index is seen directly. A job that fails
            // even so is reported, not thrown, so the report still comes out.
            do {
                for try await (index, output) in pool.mapUnordered(Spin.self, inputs) {
                    deliveries[index] += 1
                    if output != index * index { wrong += 1 }
                }
            } catch let error as ProcessPoolError {
                failures["\(error.code)", default: 0] += 1
                FileHandle.standardError.write(Data("chaos: map failed: \(error)\n".utf8))
            }
        } else {
            for (index, result) in try await pool.mapResults(Spin.self, inputs).enumerated() {
                deliveries[index] += 1
                switch result {
                case .success(let output): if output != index * index { wrong += 1 }
                case .failure(let error): failures["\(error.code)", default: 0] += 1
                }
            }
        }
        killer.cancel()
        kills = await killer.value
    }
    let elapsed = clock.now - start
    let descriptorsAfter = openDescriptors()
    errno = 0
    let noChildren = waitpid(-1, nil, WNOHANG) == -1 && errno == ECHILD
    let lost = deliveries.filter { $0 == 0 }.count
    let duplicated = deliveries.filter { $0 > 1 }.count
    let failed = failures.values.reduce(0, +)
    let codes = failures.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
    print("jobs \(jobs) workers \(workers) retries \(retries) kills \(kills) succeeded \(jobs - lost - failed) failed \(failed) codes [\(codes)] lost \(lost) duplicated \(duplicated) wrong \(wrong) seconds \(String(format: "%.1f", Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)) descriptors-before \(descriptorsBefore.count) descriptors-after \(descriptorsAfter.count) leaked [\(descriptorsAfter.subtracting(descriptorsBefore).sorted().map { "\($0)=\(describeDescriptor($0))" }.joined(separator: ","))] no-children \(noChildren)")
}

/// A small deterministic generator (SplitMix64), so random runs repeat exactly; the test
/// suite uses it too.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
