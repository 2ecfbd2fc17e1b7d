import Foundation
import Synchronization
import Testing

/// A single-node Slurm of the tests' own: munged, slurmctld and slurmd with all state in a
/// private directory, on ports of its own.
///
/// ```swift
/// let cluster = try SlurmTestCluster.start()
/// defer { cluster.stop() }
/// let result = try cluster.runInAllocation(cpus: 2, ["sh", "-c", "echo $SLURM_JOB_NODELIST"])
/// // result.output == "localhost"
/// ```
///
/// Nothing under /etc or /run is read or changed: the munge key, munged's socket, pid and seed
/// files, `slurm.conf`, the controller's state, the node's spool and every log are in one
/// temporary directory named after this process's pid, and clients find the cluster through
/// `SLURM_CONF` alone (``environment``). The two TCP ports are chosen free, below the kernel's
/// ephemeral range, so this cluster meets neither another test process's nor a Slurm already
/// running here on the usual 6817 and 6818.
///
/// The node is called "localhost" (at 127.0.0.1): code under test resolves node names to
/// reach them, and that one resolves everywhere. It has as many CPUs as this machine
/// (``cpus``), in one partition that is the default, shares CPUs between up to four jobs
/// (`OverSubscribe=FORCE:4`), sets no time limits and never cancels a job whose `srun` went
/// quiet (`InactiveLimit=0`).
///
/// Needs root (slurmd starts jobs as their users, and here every daemon runs as root), munge's `munged` and
/// `mungekey`, `slurmctld`, `slurmd`, and the client commands `sinfo`, `salloc`, `srun` and
/// `scancel`; on Debian:
/// `apt-get install -y --no-install-recommends slurmd slurmctld slurm-client munge`.
/// `start` throws an error saying which is missing rather than skipping, so a machine that
/// cannot run these tests fails them instead of passing them silently.
final class SlurmTestCluster: Sendable {
    /// Why `start` or `runInAllocation` could not do what was asked.
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// The programs used, found once by `start`.
    struct Tools: Sendable {
        let munged: String
        let mungekey: String
        let slurmctld: String
        let slurmd: String
        let sinfo: String
        let salloc: String
        let scancel: String
    }

    /// What a finished command left behind.
    struct CommandResult: Sendable {
        let status: Int32
        /// Its stdout, trimmed of surrounding white space.
        let output: String
        /// Its stderr, trimmed of surrounding white space.
        let errors: String
    }

    /// One of the three daemons: where it writes its pid, its log and its stderr.
    struct Daemon: Sendable {
        let name: String
        let pidFile: String
        let logFile: String
        /// What it wrote to stderr: errors from before it opened its log (a bad `slurm.conf`),
        /// and, since the daemons run in the foreground, a copy of the log.
        let errorFile: String
    }

    /// The private temporary directory everything is written to.
    let directory: String
    /// Its `slurm.conf`.
    let configPath: String
    /// The name of the one node, as `SLURM_JOB_NODELIST` gives it.
    let nodeName = "localhost"
    /// The node's CPUs: this machine's processors.
    let cpus: Int
    /// Where slurmctld listens (on all addresses).
    let controllerPort: Int
    /// Where slurmd listens (on all addresses).
    let nodePort: Int
    let tools: Tools
    let munged: Daemon
    let slurmctld: Daemon
    let slurmd: Daemon
    /// Each daemon's `sh`, our child and the daemon's parent (see `launch`); kept so that they
    /// are reaped and so that `stop` can wait for them.
    private let launchers: Mutex<[Process]>
    private let stopped = Mutex(false)

    /// What a client needs to use this cluster rather than any other: `SLURM_CONF`. Add it to
    /// a command's environment; `runInAllocation` does.
    var environment: [String: String] { ["SLURM_CONF": configPath] }

    /// The three daemons, in the order `stop` ends them.
    var daemons: [Daemon] { [slurmd, slurmctld, munged] }

    private init(
        directory: String, cpus: Int, ports: (controller: Int, node: Int), tools: Tools, munged: Daemon, slurmctld: Daemon,
        slurmd: Daemon, launchers: [Process]
    ) {
        self.directory = directory
        self.configPath = directory + "/etc/slurm.conf"
        self.cpus = cpus
        self.controllerPort = ports.controller
        self.nodePort = ports.node
        self.tools = tools
        self.munged = munged
        self.slurmctld = slurmctld
        self.slurmd = slurmd
        self.launchers = Mutex(launchers)
    }

    deinit { stop() }

    // MARK: Starting

    private static let directoryPrefix = "slurm-test-cluster."

    /// Numbers this process's allocations, so each has a job name of its own to cancel by.
    private static let serials = Atomic<Int>(0)

    /// Starts munged, slurmctld and slurmd and returns once `sinfo` shows the node idle (about
    /// a second here; at most thirty).
    ///
    /// Throws, never skips, when this machine cannot: not root, a program missing, or a daemon
    /// that exits or a node that does not come up (the error then ends with the daemons' logs).
    /// Whatever was started before the failure is stopped again. Blocks: call it from a thread
    /// of its own (`onDedicatedThread`), not from the cooperative pool.
    static func start() throws -> SlurmTestCluster {
        guard geteuid() == 0 else {
            throw Failure(description: "SlurmTestCluster needs root (slurmd and slurmctld run as root with SlurmUser=root); euid is \(geteuid())")
        }
        let tools = try findTools()
        removeLeftovers()
        // Two test processes choosing ports at the same moment could still pick the same one
        // (the check and the daemon's bind are not one step); the daemon that loses says so
        // in its log, and a second try with other ports settles it.
        var attempt = 1
        while true {
            do {
                return try start(tools: tools)
            } catch let failure as Failure where attempt < 3 && failure.description.contains("Address already in use") {
                attempt += 1
            }
        }
    }

    private static func start(tools: Tools) throws -> SlurmTestCluster {
        let ports = try choosePorts()
        let directory = try makeTemporaryDirectory()
        let cpus = ProcessInfo.processInfo.activeProcessorCount
        func daemon(_ name: String) -> Daemon {
            Daemon(name: name, pidFile: "\(directory)/run/\(name).pid", logFile: "\(directory)/log/\(name).log", errorFile: "\(directory)/log/\(name).stderr")
        }
        let munged = daemon("munged")
        let slurmctld = daemon("slurmctld")
        let slurmd = daemon("slurmd")
        var launchers: [Process] = []
        func instance() -> SlurmTestCluster {
            SlurmTestCluster(
                directory: directory, cpus: cpus, ports: ports, tools: tools, munged: munged, slurmctld: slurmctld, slurmd: slurmd,
                launchers: launchers)
        }
        do {
            let socket = directory + "/run/munge.socket"
            let key = directory + "/munge/munge.key"
            try check(run([tools.mungekey, "--create", "--keyfile=" + key, "--bits=1024"], environment: slurmEnvironment(directory)), "mungekey")
            try write(configuration(directory: directory, cpus: cpus, ports: ports, mungeSocket: socket), to: directory + "/etc/slurm.conf")
            // Slurm would otherwise read /etc/slurm/plugstack.conf, which is the machine's, not ours.
            try write("", to: directory + "/etc/plugstack.conf")

            // Foreground (-F, -D) rather than daemonized: see `launch` for why.
            let mungedLauncher = try launch(
                [
                    tools.munged, "--foreground", "--key-file=" + key, "--socket=" + socket, "--pid-file=" + munged.pidFile,
                    "--log-file=" + munged.logFile, "--seed-file=" + directory + "/munge/munged.seed",
                ], daemon: munged, directory: directory)
            launchers.append(mungedLauncher)
            // slurmctld and slurmd need munged from their first message on: wait for its socket
            // (a few milliseconds).
            try waitFor("munged's socket", deadline: .now + .seconds(10), launchers: [(munged, mungedLauncher)]) {
                FileManager.default.fileExists(atPath: socket)
            }

            // -c: no state from an earlier run (there is none; it also skips looking for it).
            launchers.append(try launch([tools.slurmctld, "-D", "-c"], daemon: slurmctld, directory: directory))
            // -N: the node is "localhost", not this machine's host name.
            launchers.append(try launch([tools.slurmd, "-D", "-N", "localhost"], daemon: slurmd, directory: directory))
            let watched = zip([munged, slurmctld, slurmd], launchers).map { ($0, $1) }
            var lastState = ""
            try waitFor("the node to be idle", deadline: .now + .seconds(30), launchers: watched) {
                // Until slurmctld listens sinfo fails; until slurmd has registered the node is
                // "unknown" (or "down", before ReturnToService brings it back).
                let answer = try run([tools.sinfo, "-h", "-N", "-o", "%T"], environment: slurmEnvironment(directory), timeout: .seconds(15))
                lastState = answer.status == 0 ? answer.output : answer.errors
                return answer.status == 0 && answer.output.hasPrefix("idle")
            } describe: {
                let reasons = (try? run([tools.sinfo, "-N", "-o", "%N %T %E"], environment: slurmEnvironment(directory), timeout: .seconds(5)))?.output
                return "sinfo said: \(lastState.isEmpty ? "nothing" : lastState)" + (reasons.map { "\n" + $0 } ?? "")
            }
            return instance()
        } catch {
            // Whatever was started is ended, and the directory removed, by an instance's `stop`.
            instance().stop()
            throw error
        }
    }

    /// The programs `start` and `runInAllocation` use, or an error naming every one missing and
    /// the packages that have them.
    private static func findTools() throws -> Tools {
        var missing: [String] = []
        func find(_ name: String, _ package: String) -> String {
            if let path = executablePath(name) { return path }
            missing.append("\(name) (\(package))")
            return name
        }
        let tools = Tools(
            munged: find("munged", "munge"), mungekey: find("mungekey", "munge"), slurmctld: find("slurmctld", "slurmctld"),
            slurmd: find("slurmd", "slurmd"), sinfo: find("sinfo", "slurm-client"), salloc: find("salloc", "slurm-client"),
            scancel: find("scancel", "slurm-client"))
        // Not run by this type, but by every allocation that starts a job step.
        _ = find("srun", "slurm-client")
        guard missing.isEmpty else {
            throw Failure(
                description: "SlurmTestCluster needs programs that are not on PATH or in /usr/sbin, /sbin: \(missing.joined(separator: ", ")). "
                    + "On Debian: apt-get install -y --no-install-recommends slurmd slurmctld slurm-client munge")
        }
        return tools
    }

    /// `name` as found on PATH or in the sbin directories (often missing from a test's PATH).
    private static func executablePath(_ name: String) -> String? {
        if name.contains("/") { return name }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        let directories = path.split(separator: ":").map(String.init) + ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        return directories.map { $0 + "/" + name }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// Makes the private directory and its subdirectories, with the modes munged insists on.
    private static func makeTemporaryDirectory() throws -> String {
        // The pid in the name lets a later run remove the directory, and end the daemons, if
        // this process dies without stopping (see `removeLeftovers`).
        let base = FileManager.default.temporaryDirectory.path
        var template = Array("\(base)/\(directoryPrefix)\(getpid()).XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else {
            throw Failure(description: "mkdtemp in \(base) failed: \(String(cString: strerror(errno)))")
        }
        let directory = String(cString: made)
        // munged refuses a socket in a directory that not everyone may search (clients of any
        // user connect to it), and a key in one that anyone else may read or write. mkdtemp
        // makes 0700.
        for (path, mode) in [
            ("", 0o755), ("/munge", 0o700), ("/run", 0o755), ("/log", 0o755), ("/etc", 0o755), ("/state", 0o700),
            ("/spool", 0o755),
        ] {
            let full = directory + path
            if !path.isEmpty {
                try FileManager.default.createDirectory(atPath: full, withIntermediateDirectories: false)
            }
            guard chmod(full, mode_t(mode)) == 0 else {
                throw Failure(description: "chmod \(full) failed: \(String(cString: strerror(errno)))")
            }
        }
        return directory
    }

    /// Two ports for slurmctld and slurmd that nothing listens on, below the kernel's ephemeral
    /// range: a port from that range could be taken, between the check and the daemon's bind,
    /// by any outgoing connection (srun and salloc open some on every step).
    private static func choosePorts() throws -> (controller: Int, node: Int) {
        let range = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8))?
            .split(whereSeparator: \.isWhitespace).compactMap { Int($0) } ?? []
        let ephemeralStart = range.first ?? 32_768
        let candidates = ephemeralStart > 12_000 ? 10_000..<ephemeralStart : 10_000..<65_000
        var chosen: [Int] = []
        for _ in 0..<200 where chosen.count < 2 {
            let port = Int.random(in: candidates)
            // 6817 and 6818 are Slurm's defaults: a Slurm already running here is on them.
            if (6_817...6_819).contains(port) || chosen.contains(port) || !portIsFree(port) { continue }
            chosen.append(port)
        }
        guard chosen.count == 2 else { throw Failure(description: "no two free TCP ports in \(candidates) after 200 tries") }
        return (chosen[0], chosen[1])
    }

    /// Whether a listening socket could bind `port` on every address now, as slurmctld and
    /// slurmd do.
    private static func portIsFree(_ port: Int) -> Bool {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr = in_addr(s_addr: INADDR_ANY)
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        return result == 0
    }

    private static func configuration(directory: String, cpus: Int, ports: (controller: Int, node: Int), mungeSocket: String) -> String {
        """
        ClusterName=mptest
        SlurmctldHost=localhost(127.0.0.1)
        SlurmctldPort=\(ports.controller)
        SlurmdPort=\(ports.node)
        SlurmUser=root
        SlurmdUser=root
        AuthType=auth/munge
        CredType=cred/munge
        # Our munged, not the machine's (/run/munge), which may not run or have another key.
        AuthInfo=socket=\(mungeSocket)
        StateSaveLocation=\(directory)/state
        SlurmdSpoolDir=\(directory)/spool
        SlurmctldPidFile=\(directory)/run/slurmctld.pid
        SlurmdPidFile=\(directory)/run/slurmd.pid
        SlurmctldLogFile=\(directory)/log/slurmctld.log
        SlurmdLogFile=\(directory)/log/slurmd.log
        SlurmctldDebug=info
        SlurmdDebug=info
        PlugStackConfig=\(directory)/etc/plugstack.conf
        # No cgroups: a container may not let us have them, and the tests need none.
        ProctrackType=proctrack/linuxproc
        TaskPlugin=task/none
        JobAcctGatherType=jobacct_gather/none
        AccountingStorageType=accounting_storage/none
        # No MPI: Debian's default is pmix, whose library is not installed.
        MpiDefault=none
        SwitchType=switch/none
        # The default, /bin/mail, is usually missing, and slurmctld logs an error for it.
        MailProg=/bin/true
        SchedulerType=sched/backfill
        SelectType=select/cons_tres
        SelectTypeParameters=CR_Core
        # A node that was down comes back as soon as its slurmd registers.
        ReturnToService=2
        # Never cancel an allocation because its srun was killed or went quiet: the tests do that.
        InactiveLimit=0
        KillWait=5
        NodeName=localhost NodeAddr=127.0.0.1 CPUs=\(cpus) State=UNKNOWN
        PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4

        """
    }

    /// Starts daemon `arguments` in the foreground under `sh`, its stdout and stderr to
    /// `daemon.errorFile`, in `directory`, and returns the `sh`.
    ///
    /// Why in the foreground: a daemon's parent is this machine's PID 1, which here never reaps,
    /// so every daemon stopped would stay a zombie; in the foreground it is our `sh`'s child,
    /// reaped by it, and the `sh` is reaped by Foundation. Why under `sh`: slurmctld and slurmd
    /// close every inherited descriptor as they start, and among them is the socket by which
    /// Foundation's `Process` learns that a child has ended; it would then wait for the daemon
    /// with a blocking `waitpid` on the one thread that handles every `Process` here, stalling
    /// all other commands' exits until the daemon ends (see `SSHTestHosts.launch`). `sh` keeps
    /// the socket open until the daemon is over. The daemons still write their pid files, and
    /// `stop` ends them by those.
    private static func launch(_ arguments: [String], daemon: Daemon, directory: String) throws -> Process {
        guard FileManager.default.createFile(atPath: daemon.errorFile, contents: nil) else {
            throw Failure(description: "could not create \(daemon.errorFile)")
        }
        let errors = try FileHandle(forWritingTo: URL(fileURLWithPath: daemon.errorFile))
        defer { try? errors.close() }
        return try launch(
            arguments, environment: slurmEnvironment(directory), standardOutput: errors, standardError: errors,
            workingDirectory: directory + "/log")
    }

    /// Polls, with short waits, until `condition` holds; throws once `deadline` passes or one of
    /// `launchers` has exited (its daemon ended), with `describe()` and the daemons' log tails.
    private static func waitFor(
        _ what: String, deadline: ContinuousClock.Instant, launchers: [(Daemon, Process)],
        _ condition: () throws -> Bool, describe: () -> String = { "" }
    ) throws {
        while true {
            if try condition() { return }
            if let (daemon, launcher) = launchers.first(where: { !$0.1.isRunning }) {
                throw Failure(
                    description: "\(daemon.name) exited with status \(launcher.terminationStatus) while waiting for \(what). \(describe())"
                        + logTails(launchers.map(\.0)))
            }
            if ContinuousClock.now >= deadline {
                throw Failure(description: "timed out waiting for \(what). \(describe())" + logTails(launchers.map(\.0)))
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
    }

    /// The last twenty lines of each daemon's log, or of its stderr when the log is empty (it
    /// failed before opening it): the daemons copy their log to stderr in the foreground.
    private static func logTails(_ daemons: [Daemon]) -> String {
        var text = ""
        for daemon in daemons {
            for path in [daemon.logFile, daemon.errorFile] {
                let lines = ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").suffix(20)
                if lines.isEmpty && path == daemon.logFile { continue }
                text += "\n\(daemon.name) (\(path)), last lines:\n" + (lines.isEmpty ? "(empty)" : lines.joined(separator: "\n"))
                break
            }
        }
        return text
    }

    private static func write(_ text: String, to path: String) throws {
        guard FileManager.default.createFile(atPath: path, contents: Data(text.utf8), attributes: [.posixPermissions: 0o644]) else {
            throw Failure(description: "could not write \(path)")
        }
    }

    /// Ends what test processes that died without `stop` (a crash, a SIGKILL) left: their
    /// daemons and jobs, and their directories. Only directories named after a pid that no
    /// longer exists are touched.
    private static func removeLeftovers() {
        let base = FileManager.default.temporaryDirectory.path
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: base)) ?? [] where entry.hasPrefix(directoryPrefix) {
            guard let pid = Int32(entry.dropFirst(directoryPrefix.count).prefix { $0.isNumber }), pid != getpid(),
                kill(pid, 0) == -1 && errno == ESRCH
            else { continue }
            killProcesses(mentioning: base + "/" + entry, signal: SIGKILL, until: .now + .seconds(2))
            try? FileManager.default.removeItem(atPath: base + "/" + entry)
        }
    }

    // MARK: Running in an allocation

    /// Runs `arguments` inside a fresh allocation of `cpus` CPUs (at most ``cpus``) on the
    /// node, with stdin from /dev/null, and returns its exit status and output once it ends.
    ///
    /// It runs under `salloc`, here, as salloc's child, with the variables Slurm sets for an
    /// allocation (`SLURM_JOB_ID`, `SLURM_JOB_NODELIST`, `SLURM_JOB_CPUS_PER_NODE`, …) and
    /// `SLURM_CONF`, on top of this process's environment with any `SLURM_*`, `SALLOC_*`,
    /// `SBATCH_*` and `SRUN_*` removed, and then `environment`. `srun` inside it starts job
    /// steps on the node, and a step's tasks get the same environment. Steps that are to run
    /// at the same time need `srun --overlap`: without it the second waits for the first
    /// ("step creation temporarily disabled … Requested nodes are busy").
    ///
    /// `salloc` rather than `sbatch --wait`: the command's stdout and stderr reach us through
    /// pipes, not files, its status is salloc's, and no batch step is started, as when a user
    /// runs a coordinator under salloc. Both outputs are returned trimmed of surrounding white
    /// space.
    ///
    /// - Throws: ``Failure`` if `cpus` is more than the node has (Slurm would queue the job for
    ///   ever), or if the command has not ended after `timeout`; it is then cancelled
    ///   (`scancel`) and killed with everything it started.
    func runInAllocation(
        cpus: Int, _ arguments: [String], environment: [String: String] = [:], timeout: Duration = .seconds(60)
    ) throws -> (status: Int32, output: String, errors: String) {
        // Slurm would queue such a job for ever ("Requested partition configuration not
        // available now") rather than refuse it.
        guard (1...self.cpus).contains(cpus) else {
            throw Failure(description: "runInAllocation(cpus: \(cpus)): the node has \(self.cpus) CPUs")
        }
        let serial = Self.serials.wrappingAdd(1, ordering: .relaxed).newValue
        // A name of its own, so that a timed-out allocation can be cancelled by it.
        let jobName = "slurm-test-cluster-\(getpid())-\(serial)"
        let salloc = [
            tools.salloc, "--quiet", "--nodes=1", "--ntasks=\(cpus)", "--nodelist=\(nodeName)", "--job-name=\(jobName)", "--",
        ]
        let result = try Self.run(
            salloc + arguments, environment: Self.slurmEnvironment(directory).merging(environment) { $1 }, timeout: timeout
        ) { [tools, directory] _ in
            // Cancelling ends the job's steps and makes salloc end the command; what is left
            // (a command that ignores SIGHUP) is killed with the launcher's other descendants.
            _ = try? Self.run([tools.scancel, "--name=\(jobName)"], environment: Self.slurmEnvironment(directory), timeout: .seconds(10))
        }
        return (result.status, result.output, result.errors)
    }

    /// The environment the daemons and the client commands run in: this process's, without
    /// Slurm's input and output variables (this process may itself run in an allocation, or
    /// have `SLURM_CONF` set for another cluster), with `SLURM_CONF` naming this cluster's
    /// configuration.
    private static func slurmEnvironment(_ directory: String) -> [String: String] {
        var environment = ProcessInfo.processInfo.environment.filter { name, _ in
            !["SLURM_", "SALLOC_", "SBATCH_", "SRUN_"].contains { name.hasPrefix($0) }
        }
        environment["SLURM_CONF"] = directory + "/etc/slurm.conf"
        return environment
    }

    // MARK: Running commands

    /// Runs `arguments` to completion, with stdin from /dev/null, and returns its status and
    /// output. After `timeout` it calls `onTimeout` with the process, then kills the process
    /// and everything it started, and throws.
    private static func run(
        _ arguments: [String], environment: [String: String], timeout: Duration = .seconds(30),
        onTimeout: ((Process) -> Void)? = nil
    ) throws -> CommandResult {
        let output = Pipe()
        let errors = Pipe()
        // Not `waitUntilExit`: it runs this thread's run loop in 50-ms slices, and sleeps out
        // every slice once this thread has started a long-lived process (a daemon).
        let exited = DispatchSemaphore(value: 0)
        let process = try launch(arguments, environment: environment, standardOutput: output, standardError: errors) { _ in exited.signal() }
        let outputDrain = Drain(output.fileHandleForReading)
        let errorDrain = Drain(errors.fileHandleForReading)
        let deadline = DispatchTime.now() + .nanoseconds(Int(timeout.components.seconds * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000))
        if exited.wait(timeout: deadline) == .timedOut {
            onTimeout?(process)
            // The command's descendants first: killing the `sh` first would orphan them, and
            // they could no longer be found by their parent.
            let family = descendants(of: process.processIdentifier)
            if exited.wait(timeout: .now() + 2) == .timedOut {
                for pid in descendants(of: process.processIdentifier) + family { kill(pid, SIGKILL) }
                kill(process.processIdentifier, SIGKILL)
                _ = exited.wait(timeout: .now() + 5)
            }
            throw Failure(
                description: "\(arguments.joined(separator: " ")) did not end within \(timeout); stdout so far: \(outputDrain.text(waitingUntil: .now() + 1)); "
                    + "stderr so far: \(errorDrain.text(waitingUntil: .now() + 1))")
        }
        // A background process the command left may hold the pipes open: what it writes later
        // is not waited for.
        return CommandResult(
            status: process.terminationStatus, output: outputDrain.text(waitingUntil: .now() + 5),
            errors: errorDrain.text(waitingUntil: .now() + 5))
    }

    /// Starts `arguments` (found as `executablePath` finds it) under `sh`, with stdin from
    /// /dev/null, and returns the running `sh`; it exits with the command's status once the
    /// command has ended. `sh` keeps Foundation's end-of-process socket open for as long as
    /// the command runs, whatever descriptors the command closes (see `launch(_:daemon:directory:)`).
    private static func launch(
        _ arguments: [String], environment: [String: String], standardOutput: Any?, standardError: Any?,
        workingDirectory: String? = nil, terminationHandler: (@Sendable (Process) -> Void)? = nil
    ) throws -> Process {
        guard let executable = executablePath(arguments[0]) else {
            throw Failure(description: "\(arguments[0]): not found on PATH or in /usr/sbin, /sbin")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        // `; exit $?` keeps sh from replacing itself with the command.
        process.arguments = ["-c", "\"$@\"; exit $?", "sh", executable] + arguments.dropFirst()
        process.environment = environment
        if let workingDirectory { process.currentDirectoryURL = URL(fileURLWithPath: workingDirectory) }
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = standardOutput
        process.standardError = standardError
        process.terminationHandler = terminationHandler  // set before `run`, or it may be missed
        try process.run()
        return process
    }

    /// `result`, or an error naming `what` and quoting its stderr if it failed.
    @discardableResult
    private static func check(_ result: CommandResult, _ what: String) throws -> CommandResult {
        guard result.status == 0 else { throw Failure(description: "\(what) failed (status \(result.status)): \(result.errors)") }
        return result
    }

    /// Reads a pipe to its end on a thread of its own, so that neither of a command's pipes can
    /// fill and stall it, and so that a reader can stop waiting for the end.
    private final class Drain: Sendable {
        private let data = Mutex(Data())
        private let ended = DispatchSemaphore(value: 0)

        init(_ handle: FileHandle) {
            Thread { [self] in
                while true {
                    let chunk = handle.availableData
                    if chunk.isEmpty { break }
                    data.withLock { $0.append(chunk) }
                }
                ended.signal()
            }.start()
        }

        /// What was read by the pipe's end or by `deadline`, whichever is first, trimmed.
        func text(waitingUntil deadline: DispatchTime) -> String {
            if ended.wait(timeout: deadline) == .success { ended.signal() }
            return data.withLock { String(decoding: $0, as: UTF8.self) }.trimmingCharacters(in: .whitespacesAndNewlines)
        }
    }

    // MARK: Processes

    /// Whether process `pid` exists and has not ended. A zombie counts as ended: slurmd starts
    /// each slurmstepd detached, as a child of PID 1, and PID 1 here never reaps, so every
    /// finished step stays a zombie.
    static func isAlive(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let end = stat.lastIndex(of: ")")
        else { return false }
        // The state follows the command name, which is in parentheses and may hold spaces.
        let state = stat[stat.index(after: end)...].split(separator: " ").first
        return state != "Z" && state != "X"
    }

    /// The pids of every process now running here, with each one's parent.
    private static func parents() -> [(pid: Int32, parent: Int32)] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { entry in
            guard let pid = Int32(entry), let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                let end = stat.lastIndex(of: ")")
            else { return nil }
            let fields = stat[stat.index(after: end)...].split(separator: " ")
            guard fields.count > 1, let parent = Int32(fields[1]) else { return nil }
            return (pid, parent)
        }
    }

    /// The children of `pid`, their children, and so on.
    private static func descendants(of pid: Int32) -> [Int32] {
        let all = parents()
        var found: [Int32] = []
        var frontier = [pid]
        while let next = frontier.popLast() {
            let children = all.filter { $0.parent == next }.map(\.pid)
            found += children
            frontier += children
        }
        return found
    }

    /// The live processes, this one aside, whose environment or command line mentions
    /// `directory`: the daemons (munged names its files on its command line; the others have
    /// `SLURM_CONF`), slurmstepd, which slurmd starts with its own environment and which
    /// outlives it, and every allocation's command and task, which get `SLURM_CONF` from us.
    static func processes(mentioning directory: String) -> [Int32] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { Int32($0) }.filter { $0 != getpid() && process($0, mentions: directory) }
    }

    /// Whether `pid` is alive and its environment or command line mentions `directory`.
    private static func process(_ pid: Int32, mentions directory: String) -> Bool {
        guard isAlive(pid) else { return false }
        let needle = Data((directory + "/").utf8)
        return ["environ", "cmdline"].contains { file in
            // Read by handle: procfs files report a size of zero.
            guard let handle = FileHandle(forReadingAtPath: "/proc/\(pid)/\(file)") else { return false }
            defer { try? handle.close() }
            return (try? handle.readToEnd())?.range(of: needle) != nil
        }
    }

    /// Sends `signal` to every process that mentions `directory`, again until none is left (a
    /// dying slurmd may have started a step meanwhile) or `deadline` passes.
    private static func killProcesses(mentioning directory: String, signal: Int32, until deadline: ContinuousClock.Instant) {
        while true {
            let found = processes(mentioning: directory)
            if found.isEmpty || ContinuousClock.now >= deadline { return }
            for pid in found { kill(pid, signal) }
            Thread.sleep(forTimeInterval: 0.01)
        }
    }

    /// The pid in `daemon`'s pid file, if the file is there and that process is ours: it runs
    /// and mentions this directory (a pid can be reused).
    func pid(of daemon: Daemon) -> Int32? {
        guard let text = try? String(contentsOfFile: daemon.pidFile, encoding: .utf8),
            let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)),
            Self.process(pid, mentions: directory)
        else { return nil }
        return pid
    }

    // MARK: Stopping

    /// Ends slurmd, slurmctld and munged (SIGTERM, by their pid files, then SIGKILL after five
    /// seconds), then every process left that mentions the directory (job steps outlive
    /// slurmd), and removes the directory. Safe to call more than once; `deinit` calls it too.
    func stop() {
        let first = stopped.withLock { stopped in
            defer { stopped = true }
            return !stopped
        }
        guard first else { return }
        // slurmd first, so that it starts no new steps; munged last, since the others talk to
        // it until they end.
        for daemon in daemons { end(daemon) }
        // Each `sh` exits once it has reaped its daemon. Killed before that, it would leave
        // the daemon a zombie of PID 1 for good.
        let launcherPIDs = launchers.withLock { launchers in
            let deadline = ContinuousClock.now + .seconds(2)
            for launcher in launchers {
                while launcher.isRunning && ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.002) }
            }
            return launchers.map(\.processIdentifier)
        }
        // slurmd leaves its steps running (they survive a restart of it): they, their tasks,
        // salloc and the commands it runs, and a daemon that failed before writing its pid
        // file (with its `sh`), are found by what they mention.
        Self.killProcesses(mentioning: directory, signal: SIGKILL, until: .now + .seconds(2))
        for pid in launcherPIDs where Self.isAlive(pid) { kill(pid, SIGKILL) }
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// SIGTERMs `daemon` and waits up to five seconds for it to end, then SIGKILLs it.
    private func end(_ daemon: Daemon) {
        guard let pid = pid(of: daemon) else { return }
        kill(pid, SIGTERM)
        let deadline = ContinuousClock.now + .seconds(5)
        while Self.isAlive(pid) && ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.005) }
        if Self.isAlive(pid) { kill(pid, SIGKILL) }
    }
}

@Suite("Slurm test cluster: munged, slurmctld and slurmd of the tests' own", .serialized, .timeLimit(.minutes(2)))
struct SlurmTestClusterTests {
    @Test("an allocation sees its node and CPUs, srun runs a step in it, and stop leaves nothing")
    func allocationAndStep() async throws {
        let clock = ContinuousClock()
        let began = clock.now
        let cluster = try await onDedicatedThread { try SlurmTestCluster.start() }
        let startup = clock.now - began
        print("SlurmTestCluster.start took \(startup) (ports \(cluster.controllerPort), \(cluster.nodePort); \(cluster.cpus) CPUs)")
        #expect(startup < .seconds(30))
        #expect(cluster.environment == ["SLURM_CONF": cluster.configPath])

        let result = try await onDedicatedThread {
            try cluster.runInAllocation(cpus: 2, ["sh", "-c", "echo $SLURM_JOB_NODELIST $SLURM_JOB_CPUS_PER_NODE; srun --overlap -N1 -n1 hostname"])
        }
        #expect(result.status == 0, "\(result.errors)")
        let lines = result.output.split(separator: "\n").map(String.init)
        #expect(lines.first == "\(cluster.nodeName) 2", "\(result.output)")
        // The step ran on the node, which is this machine under another name.
        #expect(Array(lines.dropFirst()) == [Self.hostName()], "\(result.output)")

        let daemons = cluster.daemons.compactMap { cluster.pid(of: $0) }
        #expect(daemons.count == 3)
        try await onDedicatedThread { cluster.stop() }
        for pid in daemons {
            // Gone entirely, not a zombie: each was its `sh`'s child and reaped by it.
            #expect(!processExists(pid), "daemon \(pid) is still there")
        }
        #expect(SlurmTestCluster.processes(mentioning: cluster.directory).isEmpty)
        #expect(!FileManager.default.fileExists(atPath: cluster.directory))
        cluster.stop()  // idempotent
    }

    /// What `hostname` prints here.
    private static func hostName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count) == 0 else { return "" }
        return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }
}
