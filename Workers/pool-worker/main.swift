import Multiprocessing

/// Echoes its input: a round trip through a worker, for checking a set-up and for latency.
struct Echo: Job {
    static let name = "echo"
    func run(_ input: String) -> String { input }
}

/// The shipped standalone worker. A coordinator in another program starts it with
/// `withProcessPool(workers:executable:)`; the `pool` command line runs its commands here
/// (the `command` job), so timeouts, isolation and retries work the same for every job.
@main
struct PoolWorker {
    static func main() async throws {
        try await Worker.serve(jobs: [CommandJob.self, Echo.self])
    }
}
