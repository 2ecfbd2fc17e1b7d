import Multiprocessing

/// Stands in for a job that can be slow, hang or crash.
struct Render: Job {
    func run(_ scene: String) -> String { "rendered \(scene)" }
}

/// The README's "Timeouts, retries and cancellation": options for one job, and a configured pool.
@main struct RenderScenes {
    static func main() async throws {
        try await Worker.serveIfSpawned(jobs: [Render.self])

        let scene = "teapot"
        try await withProcessPool(workers: 2) { pool in
            // A job may run 30 s; after a crash or a timeout it is run up to twice more.
            let output = try await pool.run(Render.self, scene, options: JobOptions(timeout: .seconds(30), maximumRetries: 2))
            print(output)
        }

        // The configured pool needs a worker binary at /usr/local/bin/my-worker.
        if CommandLine.arguments.contains("--configured") {
            try await runConfiguredPool()
        }
    }

    static func runConfiguredPool() async throws {
        var configuration = ProcessPoolConfiguration(workerCount: 8, executablePath: "/usr/local/bin/my-worker")
        configuration.jobTimeout = .seconds(60)          // the default for every job
        configuration.maximumJobsPerWorker = 1_000       // recycle workers (cures leaks in job code)
        configuration.maximumResidentMemory = 2 << 30    // replace a worker past 2 GiB, between jobs
        configuration.memoryLimit = 8 << 30              // hard cap (RLIMIT_AS): memoryLimitExceeded
        configuration.minimumWorkerCount = 2             // with idleTimeout: shrink when idle
        configuration.idleTimeout = .seconds(30)
        try await withProcessPool(configuration: configuration) { pool in /* ... */ }
    }
}
