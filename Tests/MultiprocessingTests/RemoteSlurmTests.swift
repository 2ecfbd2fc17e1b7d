import Foundation
import Multiprocessing
import Testing

/// Workers on the nodes of a real Slurm allocation: a single-node Slurm of the tests' own
/// (``SlurmTestCluster``), a coordinator started inside `salloc`, one `srun` step per node whose
/// agent calls the coordinator back.
@Suite("Remote hosts in a Slurm allocation", .serialized, .timeLimit(.minutes(3)))
struct RemoteSlurmTests {
    @Test("a map and a pool run reach the allocation's node through one job step")
    func mapAndRunInAllocation() async throws {
        let cluster = try await onDedicatedThread { try SlurmTestCluster.start() }
        defer { cluster.stop() }

        let map = try await onDedicatedThread {
            try cluster.runInAllocation(cpus: 2, [Binaries.fixtureWorker, "map-in-allocation"])
        }
        #expect(map.status == 0, "\(map.errors)")
        #expect(map.output == "results 10000 correct true hosts \(cluster.nodeName)/2", "\(map.errors)")

        // Every job in the one step the pool started: the same step id for all of them.
        let run = try await onDedicatedThread {
            try cluster.runInAllocation(cpus: 2, [
                Binaries.directory + "/pool", "run", "--worker", Binaries.poolWorker, "--slurm", "-k",
                "sh", "-c", "echo {} $SLURM_STEP_ID", ":::", "a", "b", "c", "d",
            ])
        }
        #expect(run.status == 0, "\(run.errors)")
        let lines = run.output.split(separator: "\n")
        #expect(lines.map { $0.split(separator: " ").first ?? "" } == ["a", "b", "c", "d"], "\(run.output) \(run.errors)")
        #expect(Set(lines.map { $0.split(separator: " ").last ?? "" }).count == 1, "\(run.output)")
    }

    @Test("outside an allocation, --slurm says what is missing")
    func slurmOutsideAllocation() async throws {
        let (status, errors) = try await onDedicatedThread { () throws -> (Int32, String) in
            let process = Process()
            process.executableURL = URL(fileURLWithPath: Binaries.directory + "/pool")
            process.arguments = ["run", "--slurm", "true", ":::", "a"]
            process.environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("SLURM_") }
            let pipe = Pipe()
            process.standardError = pipe
            process.standardOutput = FileHandle.nullDevice
            try process.run()
            let data = pipe.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return (process.terminationStatus, String(decoding: data, as: UTF8.self))
        }
        #expect(status != 0)
        #expect(errors.contains("SLURM_JOB_NODELIST"), "\(errors)")
    }
}
