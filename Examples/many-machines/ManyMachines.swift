import Multiprocessing
import PrimeJobs

@main struct ManyMachines {
    static func main() async throws {
        var configuration = ProcessPoolConfiguration(executablePath: "/opt/app/prime-worker")
        if let nodes = try? WorkerHost.slurmAllocation() {
            // Under salloc or sbatch: one srun step per node, as many workers as Slurm gave it.
            configuration.hosts = nodes
        } else {
            configuration.hosts = [
                .local(slots: 4),
                .ssh("alice@node1", slots: 16),
                .ssh("node2", slots: 16, command: ["ssh", "-p", "2222"], workerPath: "/home/alice/bin/prime-worker"),
            ]
        }
        configuration.hostEventHandler = { event in print(event) }
        let chunks = stride(from: 0, to: 10_000_000, by: 10_000).map { $0...($0 + 9_999) }
        let counts = try await withProcessPool(configuration: configuration) { pool in
            try await pool.map(CountPrimes.self, chunks)
        }
        print("primes below 10,000,000:", counts.reduce(0, +))
    }
}
