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

    @Test("a connection to the call-back listener without the secret is refused, named, and keeps no one out")
    func impostorIsRefused() async throws {
        let cluster = try await onDedicatedThread { try SlurmTestCluster.start() }
        defer { cluster.stop() }
        // The "worker" on the node first calls the coordinator back itself, with 64 hex digits
        // that are not the secret, and waits for the coordinator to close that connection.
        // Then it either becomes the real agent, which must still get in, or gives up.
        func impostor(_ name: String, thenServe: Bool) throws -> String {
            let path = cluster.directory + "/" + name
            let script = """
                #!/bin/bash
                set -- $SWIFT_MULTIPROCESSING_AGENT_CALLBACK
                exec 3<>"/dev/tcp/$1/$2" || exit 9
                printf '%064d\\n' 0 >&3
                cat <&3 >/dev/null
                exec 3>&-
                \(thenServe ? "exec \"\(Binaries.poolWorker)\"" : "exit 1")

                """
            try script.write(toFile: path, atomically: true, encoding: .utf8)
            chmod(path, 0o755)
            return path
        }
        let serving = try impostor("impostor-then-agent", thenServe: true)
        let run = try await onDedicatedThread {
            try cluster.runInAllocation(cpus: 2, [Binaries.directory + "/pool", "run", "--worker", serving, "--slurm", "-k", "echo", ":::", "a", "b"])
        }
        #expect(run.status == 0, "\(run.errors)")
        #expect(run.output == "a\nb", "\(run.errors)")

        let alone = try impostor("impostor-alone", thenServe: false)
        let refused = try await onDedicatedThread {
            try cluster.runInAllocation(cpus: 2, [Binaries.directory + "/pool", "run", "--worker", alone, "--slurm", "echo", ":::", "a"])
        }
        #expect(refused.status != 0)
        #expect(refused.errors.contains("refused 1 connection(s) without the secret, from 127.0.0.1"), "\(refused.errors)")
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
