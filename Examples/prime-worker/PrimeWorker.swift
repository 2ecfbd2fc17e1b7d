import Multiprocessing
import PrimeJobs

@main struct PrimeWorker {
    static func main() async throws {
        try await Worker.serve(jobs: [CountPrimes.self])
    }
}
