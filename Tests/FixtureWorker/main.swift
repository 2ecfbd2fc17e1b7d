import Foundation
import Multiprocessing

// The test suite's worker: jobs that crash, hang, print and allocate. Given a command as its
// first argument it plays a coordinator instead, for tests that must kill or inspect one.
if CommandLine.arguments.count == 3 && CommandLine.arguments[1] == "serve-broken" {
    serveBroken(mode: CommandLine.arguments[2])
}

// The same, chosen through the environment: for tools that start the worker with no arguments
// of its own (`pool map --worker`).
if let mode = ProcessInfo.processInfo.environment["FIXTURE_BROKEN_MODE"] {
    serveBroken(mode: mode)
}

if Worker.isSpawnedByPool {
    // For tests of the termination sequence: a worker that ignores SIGTERM from the start, so
    // that when its job's timeout fires is no race with the job's own call to signal().
    if ProcessInfo.processInfo.environment["FIXTURE_IGNORE_SIGTERM"] == "1" { signal(SIGTERM, SIG_IGN) }
    try await Worker.serve(jobs: fixtureJobs)
}

switch CommandLine.arguments.dropFirst().first {
case "coordinate-and-wait":
    try await coordinateAndWait()
case "map-in-allocation":
    try await mapInAllocation()
case "coordinate-remotely-and-wait":
    try await coordinateRemotelyAndWait(sshCommand: Array(CommandLine.arguments.dropFirst(2)))
case "lifecycle-report":
    try await lifecycleReport()
case "capacity-report":
    try await capacityReport()
case "chaos":
    try await chaos(arguments: Array(CommandLine.arguments.dropFirst(2)))
case "serve":
    try await Worker.serve(jobs: fixtureJobs)
default:
    FileHandle.standardError.write(Data("usage: fixture-worker serve | coordinate-and-wait | lifecycle-report | capacity-report\n".utf8))
    exit(2)
}
