import Foundation
import Synchronization
import Testing

/// Machines of the tests' own: each an sshd in a network namespace with an address of its own,
/// reached from this namespace over a veth pair.
///
/// ```swift
/// let hosts = try SSHTestHosts.start(count: 2)
/// defer { hosts.stop() }
/// // hosts.sshCommand + [hosts.names[0], "true"] logs in as root on the first machine.
/// ```
///
/// Hosts are numbered from 0: `names[0]` is "h1". Everything lives in a private temporary
/// directory (keys, sshd configurations, logs, `ssh_config`), nothing under /etc is used or
/// changed, and the namespaces, veths and routes carry this process's pid and a per-process
/// counter, so tests running in parallel, in one process or several, do not meet.
///
/// Each sshd is also the first process of a PID namespace of its own, with its own /proc, like
/// a machine's init: orphans there (a worker whose session ended) are reaped by it at once
/// rather than left as zombies for this machine's PID 1 (which here reaps only every couple of
/// seconds); and when it dies the kernel kills everything it started, so `stop` returns with
/// nothing left, not even a zombie. So pids printed by a remote command (`echo $$`) are that
/// host's own; `processes(inHost:)` and `sshdPID(ofHost:)` give them as seen from here, and
/// `hostPID(ofRemotePID:inHost:)` translates.
///
/// Needs root, `ip` (iproute2), `unshare` (util-linux) and OpenSSH's `ssh`, `ssh-keygen` and
/// /usr/sbin/sshd; `start` throws an error saying which is missing rather than skipping, so a
/// machine that cannot run these tests fails them instead of passing them silently.
final class SSHTestHosts: Sendable {
    /// One machine: its namespace, the two ends of its link, and its sshd's files.
    struct Machine: Sendable {
        /// Its ssh_config alias, "h1", "h2", …
        let name: String
        let namespace: String
        /// The host-side end of the veth pair (the other end is `eth0` inside the namespace).
        let link: String
        /// The /30 both ends are in, e.g. "10.213.0.4/30".
        let subnet: String
        let hostSideAddress: String
        /// The namespace-side address, where sshd listens.
        let address: String
        let sshdConfig: String
        let sshdLog: String
        /// What `unshare`, `ip netns exec` and sshd wrote to stderr.
        let sshdErrors: String
    }

    /// The programs used, found once by `start`.
    struct Tools: Sendable {
        let ip: String
        let unshare: String
        let ssh: String
        let sshKeygen: String
        let sshd: String
    }

    /// Why `start` (or a link change) could not do what was asked.
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// What a finished command left behind.
    struct CommandResult: Sendable {
        let status: Int32
        /// Its stdout, trimmed of surrounding white space.
        let output: String
        /// Its stderr, trimmed of surrounding white space.
        let errors: String
    }

    let machines: [Machine]
    let tools: Tools
    /// The private temporary directory everything is written to.
    let directory: String
    let configPath: String
    /// Each machine's `unshare`, our child and the parent of its sshd; kept so that they are
    /// reaped (Foundation waits for them) and so that `stop` can wait for them.
    private let launchers: Mutex<[Process]>
    private let stopped = Mutex(false)

    /// The ssh_config Host aliases, "h1", "h2", …
    var names: [String] { machines.map(\.name) }
    /// The namespace-side IPv4 addresses, where each host's sshd listens.
    var addresses: [String] { machines.map(\.address) }
    /// The namespaces' names, as `ip netns list` shows them.
    var namespaces: [String] { machines.map(\.namespace) }
    /// The host-side ends of the veth pairs, as `ip link` shows them.
    var hostSideLinks: [String] { machines.map(\.link) }
    /// `ssh` with this instance's configuration: `sshCommand + [names[0], "true"]` logs in as
    /// root on the first host, in batch mode, with no host-key prompt and only errors logged.
    var sshCommand: [String] { [tools.ssh, "-F", configPath] }

    private init(machines: [Machine], launchers: [Process], tools: Tools, directory: String, configPath: String) {
        self.machines = machines
        self.launchers = Mutex(launchers)
        self.tools = tools
        self.directory = directory
        self.configPath = configPath
    }

    deinit { stop() }

    // MARK: Starting

    /// Added to every /30 this type uses, with this metric. The connected route (metric 0)
    /// wins while the link is up; while it is down — `cutLink` — the kernel drops the connected
    /// route and traffic would otherwise follow the default route out of the machine, to
    /// whatever answers for 10/8 there. The blackhole keeps it here and silent. Adding it is
    /// also the claim on the subnet: `ip route add` of an existing route fails, so two test
    /// processes choosing the same /30 at the same moment cannot both get it.
    private static let claimMetric = 3_917

    /// Names namespaces so a later run can tell whose they are: "mp-ssh-<pid>-<serial>".
    private static let namespacePrefix = "mp-ssh-"

    private static let directoryPrefix = "ssh-test-hosts."

    /// Numbers this process's machines; with the pid it makes names and subnets unique.
    private static let serials = Atomic<Int>(0)

    /// Starts `count` hosts and returns once each answers `ssh <name> true` (within ten
    /// seconds in all).
    ///
    /// Throws, never skips, when this machine cannot: not root, a program missing, or an sshd
    /// that does not come up (the error then ends with its log). Whatever was set up before the
    /// failure is torn down again. Blocks for about 0.3 s for one host, 0.6 s for two: call it
    /// from a thread of its own (`onDedicatedThread`), not from the cooperative pool.
    static func start(count: Int) throws -> SSHTestHosts {
        guard count >= 1 else { throw Failure(description: "SSHTestHosts.start(count: \(count)): count must be at least 1") }
        guard geteuid() == 0 else {
            throw Failure(description: "SSHTestHosts needs root (network namespaces, veth pairs, sshd with root login); euid is \(geteuid())")
        }
        let tools = try findTools()
        removeLeftovers(tools: tools)
        // sshd refuses to start without its privilege-separation directory.
        try FileManager.default.createDirectory(atPath: "/run/sshd", withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])

        let directory = try makeTemporaryDirectory()
        var machines: [Machine] = []
        var launchers: [Process] = []
        do {
            let clientKey = directory + "/id_ed25519"
            let hostKey = directory + "/host_ed25519"
            try check(run([tools.sshKeygen, "-q", "-t", "ed25519", "-N", "", "-C", "ssh-test-hosts", "-f", clientKey]), "ssh-keygen (client key)")
            try check(run([tools.sshKeygen, "-q", "-t", "ed25519", "-N", "", "-C", "ssh-test-hosts", "-f", hostKey]), "ssh-keygen (host key)")
            let authorizedKeys = directory + "/authorized_keys"
            try write(String(contentsOfFile: clientKey + ".pub", encoding: .utf8), to: authorizedKeys)

            let routes = try existingRoutes(tools: tools)
            for number in 1...count {
                // Appended before anything is created, so a failure part-way tears down what
                // this machine already has.
                let machine = try allocate(name: "h\(number)", directory: directory, routes: routes, tools: tools)
                machines.append(machine)
                try bringUp(machine, tools: tools)
                try write(sshdConfiguration(machine, hostKey: hostKey, authorizedKeys: authorizedKeys), to: machine.sshdConfig)
                launchers.append(try launchSSHD(machine, tools: tools))
            }
            let configPath = directory + "/ssh_config"
            try write(clientConfiguration(machines, identity: clientKey), to: configPath)

            // All sshds were started above and come up together; wait for them together too
            // (an ssh login takes about 0.2 s).
            let deadline = ContinuousClock.now + .seconds(10)
            let failures = Mutex<[any Error]>([])
            let started = zip(machines, launchers).map { ($0, $1) }
            DispatchQueue.concurrentPerform(iterations: started.count) { index in
                do {
                    try waitUntilAnswering(started[index].0, launcher: started[index].1, sshCommand: [tools.ssh, "-F", configPath], deadline: deadline)
                } catch {
                    failures.withLock { $0.append(error) }
                }
            }
            if let failure = failures.withLock({ $0.first }) { throw failure }
            return SSHTestHosts(machines: machines, launchers: launchers, tools: tools, directory: directory, configPath: configPath)
        } catch {
            for machine in machines { tearDown(machine, tools: tools) }
            waitForExits(launchers)
            try? FileManager.default.removeItem(atPath: directory)
            throw error
        }
    }

    private static func findTools() throws -> Tools {
        var missing: [String] = []
        func find(_ name: String) -> String {
            if let path = executablePath(name) { return path }
            missing.append(name)
            return name
        }
        let tools = Tools(ip: find("ip"), unshare: find("unshare"), ssh: find("ssh"), sshKeygen: find("ssh-keygen"), sshd: "/usr/sbin/sshd")
        if !FileManager.default.isExecutableFile(atPath: tools.sshd) { missing.append(tools.sshd) }
        guard missing.isEmpty else {
            throw Failure(description: "SSHTestHosts needs \(missing.joined(separator: ", ")) (packages iproute2, util-linux, openssh-client, openssh-server); not found on PATH or in /usr/sbin, /sbin")
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

    private static func makeTemporaryDirectory() throws -> String {
        // The pid in the name lets a later run remove the directory if this process dies
        // without stopping (see `removeLeftovers`).
        let base = FileManager.default.temporaryDirectory.path
        var template = Array("\(base)/\(directoryPrefix)\(getpid()).XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else {
            throw Failure(description: "mkdtemp in \(base) failed: \(String(cString: strerror(errno)))")
        }
        return String(cString: made)
    }

    /// Chooses names and a free /30 for one machine, and claims the subnet with its blackhole
    /// route.
    ///
    /// Subnets are 10.(200 + pid % 50).x.y/30: another process sharing this one's pid bucket
    /// would have to be at the same serial, and then the claim decides between them.
    private static func allocate(name: String, directory: String, routes: [(base: UInt32, length: Int)], tools: Tools) throws -> Machine {
        let pid = Int(getpid())
        for _ in 0..<1024 {
            let serial = serials.wrappingAdd(1, ordering: .relaxed).newValue
            let namespace = "\(namespacePrefix)\(pid)-\(serial)"
            // Interface names are at most 15 bytes: "mps" + pid (≤ 5 in base 36) + "-" + serial
            // (≤ 5 in base 36).
            let link = "mps\(String(pid, radix: 36))-\(String(serial % 1_679_616, radix: 36))"
            let base = UInt32(10) << 24 | UInt32(200 + pid % 50) << 16 | UInt32(serial / 64 % 256) << 8 | UInt32(serial % 64 * 4)
            if FileManager.default.fileExists(atPath: "/run/netns/" + namespace)
                || FileManager.default.fileExists(atPath: "/sys/class/net/" + link)
                || routes.contains(where: { overlaps($0, (base, 30)) })
            {
                continue
            }
            let subnet = "\(dotted(base))/30"
            let claim = try run([tools.ip, "route", "add", "blackhole", subnet, "metric", "\(claimMetric)"])
            if claim.status != 0 {
                if claim.errors.contains("File exists") { continue }  // another process won it
                throw Failure(description: "ip route add blackhole \(subnet) failed: \(claim.errors)")
            }
            return Machine(
                name: name, namespace: namespace, link: link, subnet: subnet,
                hostSideAddress: dotted(base + 1), address: dotted(base + 2),
                sshdConfig: "\(directory)/sshd-\(name).conf", sshdLog: "\(directory)/sshd-\(name).log",
                sshdErrors: "\(directory)/sshd-\(name).stderr")
        }
        throw Failure(description: "no free /30 in 10.\(200 + pid % 50).0.0/16 after 1024 tries")
    }

    /// Every IPv4 destination in every routing table, the local one included, which lists each
    /// address this machine has: a /30 that overlaps none is in use by nobody here.
    private static func existingRoutes(tools: Tools) throws -> [(base: UInt32, length: Int)] {
        let listing = try check(run([tools.ip, "-4", "route", "show", "table", "all"]), "ip route show table all")
        let types: Set<Substring> = ["unicast", "local", "broadcast", "multicast", "blackhole", "unreachable", "prohibit", "throw", "nat", "anycast"]
        return listing.output.split(separator: "\n").compactMap { line in
            var words = line.split(separator: " ")[...]
            if let first = words.first, types.contains(first) { words = words.dropFirst() }
            guard let destination = words.first, destination != "default" else { return nil }
            let parts = destination.split(separator: "/")
            guard let address = parse(parts[0]) else { return nil }
            return (address, parts.count > 1 ? Int(parts[1]) ?? 32 : 32)
        }
    }

    private static func overlaps(_ a: (base: UInt32, length: Int), _ b: (base: UInt32, length: Int)) -> Bool {
        let length = min(a.length, b.length)
        let mask: UInt32 = length == 0 ? 0 : ~UInt32(0) << (32 - length)
        return a.base & mask == b.base & mask
    }

    private static func parse(_ text: Substring) -> UInt32? {
        let octets = text.split(separator: ".").compactMap { UInt32($0) }
        guard octets.count == 4, octets.allSatisfy({ $0 < 256 }) else { return nil }
        return octets.reduce(0) { $0 << 8 | $1 }
    }

    private static func dotted(_ address: UInt32) -> String {
        "\(address >> 24).\(address >> 16 & 255).\(address >> 8 & 255).\(address & 255)"
    }

    /// Creates the namespace and the veth pair and gives both ends their addresses.
    private static func bringUp(_ machine: Machine, tools: Tools) throws {
        let namespace = machine.namespace
        for arguments in [
            ["netns", "add", namespace],
            // The peer is created inside the namespace, so its name, eth0, never meets another
            // machine's in this one.
            ["link", "add", machine.link, "type", "veth", "peer", "name", "eth0", "netns", namespace],
            ["-n", namespace, "link", "set", "lo", "up"],
            ["-n", namespace, "addr", "add", machine.address + "/30", "dev", "eth0"],
            ["-n", namespace, "link", "set", "eth0", "up"],
            ["addr", "add", machine.hostSideAddress + "/30", "dev", machine.link],
            ["link", "set", machine.link, "up"],
        ] {
            try check(run([tools.ip] + arguments), "ip " + arguments.joined(separator: " "))
        }
    }

    private static func sshdConfiguration(_ machine: Machine, hostKey: String, authorizedKeys: String) -> String {
        """
        ListenAddress \(machine.address)
        Port 22
        AddressFamily inet
        HostKey \(hostKey)
        # In its PID namespace sshd is pid 1: a pid file would say only that.
        PidFile none
        AuthorizedKeysFile \(authorizedKeys)
        PermitRootLogin prohibit-password
        PubkeyAuthentication yes
        PasswordAuthentication no
        KbdInteractiveAuthentication no
        UsePAM no
        # The keys are under /tmp, which is world-writable: StrictModes would refuse them.
        StrictModes no
        UseDNS no
        # Many sessions and connections at once: a pool may open one per job.
        MaxSessions 100
        MaxStartups 100:30:200
        # Debian's bash reads ~/.bashrc for `ssh host cmd` when SHLVL < 2; root's is slow here and
        # anything it prints would land in the byte stream.
        SetEnv SHLVL=1
        PrintMotd no
        PrintLastLog no
        X11Forwarding no
        # The server never gives up on a silent client: the tests decide when a link is dead.
        ClientAliveInterval 0
        # INFO logs "Server listening on", which `start` waits for.
        LogLevel INFO

        """
    }

    private static func clientConfiguration(_ machines: [Machine], identity: String) -> String {
        var text = ""
        for machine in machines {
            text += "Host \(machine.name)\n  HostName \(machine.address)\n"
        }
        // ServerAliveInterval and ServerAliveCountMax are left at their defaults (off), as a
        // user's would be: noticing a dead link is the code under test's job.
        text += """
            Host *
              User root
              Port 22
              IdentityFile \(identity)
              IdentitiesOnly yes
              StrictHostKeyChecking no
              UserKnownHostsFile /dev/null
              GlobalKnownHostsFile /dev/null
              BatchMode yes
              LogLevel ERROR
              ConnectTimeout 5

            """
        return text
    }

    /// Starts `unshare --pid --fork --kill-child --mount-proc ip netns exec NS sshd -D …` as our
    /// child.
    ///
    /// Not daemonized: a daemon's parent is this machine's PID 1, which here leaves the dead as
    /// zombies for a second or two. `unshare` stays our child (Foundation reaps it), sshd its
    /// child and the new PID namespace's init; `--kill-child` takes sshd down if `unshare` is
    /// killed.
    private static func launchSSHD(_ machine: Machine, tools: Tools) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tools.unshare)
        process.arguments = [
            "--pid", "--fork", "--kill-child", "--mount-proc",
            tools.ip, "netns", "exec", machine.namespace, tools.sshd, "-D", "-f", machine.sshdConfig, "-E", machine.sshdLog,
        ]
        guard FileManager.default.createFile(atPath: machine.sshdErrors, contents: nil) else {
            throw Failure(description: "could not create \(machine.sshdErrors)")
        }
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: machine.sshdErrors))
        // Started from a thread of its own that then ends: Foundation ties a running Process to
        // the run loop of the thread that started it, and a thread whose run loop holds one
        // sleeps out whole 50-ms slices in every later `waitUntilExit` (see `run`).
        let failure = Mutex<(any Error)?>(nil)
        let launched = DispatchSemaphore(value: 0)
        Thread {
            do { try process.run() } catch { failure.withLock { $0 = error } }
            launched.signal()
        }.start()
        launched.wait()
        if let error = failure.withLock({ $0 }) { throw error }
        return process
    }

    /// Polls, with short waits, until `ssh <name> true` succeeds, sshd has exited, or
    /// `deadline` passes.
    private static func waitUntilAnswering(_ machine: Machine, launcher: Process, sshCommand: [String], deadline: ContinuousClock.Instant) throws {
        var lastErrors = ""
        while ContinuousClock.now < deadline && launcher.isRunning {
            // Until sshd says it listens an ssh would only be refused; reading its log is cheaper.
            if (try? String(contentsOfFile: machine.sshdLog, encoding: .utf8))?.contains("Server listening on") == true {
                let attempt = try run(sshCommand + ["-o", "ConnectTimeout=2", machine.name, "true"])
                if attempt.status == 0 { return }
                lastErrors = attempt.errors
            }
            Thread.sleep(forTimeInterval: 0.01)
        }
        let state = launcher.isRunning ? "is running but did not answer in time" : "exited with status \(launcher.terminationStatus)"
        throw Failure(description: "sshd for \(machine.name) at \(machine.address) (\(machine.namespace)) \(state); ssh said: \(lastErrors.isEmpty ? "nothing" : lastErrors)\(logTail(machine))")
    }

    private static func logTail(_ machine: Machine) -> String {
        var text = ""
        for (title, path) in [("stderr", machine.sshdErrors), ("log", machine.sshdLog)] {
            let lines = ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").suffix(20)
            text += "\nsshd \(title) (\(path)), last lines:\n" + (lines.isEmpty ? "(empty)" : lines.joined(separator: "\n"))
        }
        return text
    }

    private static func write(_ text: String, to path: String) throws {
        guard FileManager.default.createFile(atPath: path, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600]) else {
            throw Failure(description: "could not write \(path)")
        }
    }

    // MARK: Breaking and inspecting

    /// The pid, as seen from here, of host `index`'s sshd listener: the process in its
    /// namespace whose parent is its `unshare`; nil once it is gone.
    func sshdPID(ofHost index: Int) -> Int32? {
        let launcher = launchers.withLock { $0[index].processIdentifier }
        return Self.pids(in: machines[index].namespace, tools: tools).first { Self.parentPID(of: $0) == launcher }
    }

    /// Takes the host-side end of host `index`'s link down. Nothing is sent to either end:
    /// established connections hang (no FIN, no RST; their packets go to the blackhole route)
    /// and new ones fail at once ("Invalid argument", the blackhole's answer to a local sender).
    /// This side's TCP treats the blackhole as a local failure and retries every 0.5 s without
    /// backing off, so a hung connection resumes within about half a second of `restoreLink`
    /// (measured: 0.25 s after a 5-s cut).
    func cutLink(_ index: Int) throws {
        try Self.check(Self.run([tools.ip, "link", "set", machines[index].link, "down"]), "ip link set \(machines[index].link) down")
    }

    /// Brings host `index`'s link back up; connections that survived the cut carry on.
    func restoreLink(_ index: Int) throws {
        try Self.check(Self.run([tools.ip, "link", "set", machines[index].link, "up"]), "ip link set \(machines[index].link) up")
    }

    /// SIGKILLs host `index`'s sshd listener and every process in its namespace (the sessions
    /// and what they run): the machine is gone as if it had crashed, though its link stays up
    /// and connecting to it is refused.
    func killSSHD(_ index: Int) {
        if let pid = sshdPID(ofHost: index) { kill(pid, SIGKILL) }
        Self.killEverything(in: machines[index].namespace, tools: tools)
    }

    /// The pids, as seen from here, in host `index`'s namespace, its sshd listener aside: the
    /// sessions and the commands they run.
    func processes(inHost index: Int) -> [Int32] {
        let launcher = launchers.withLock { $0[index].processIdentifier }
        return Self.pids(in: machines[index].namespace, tools: tools).filter { Self.parentPID(of: $0) != launcher }
    }

    /// The pid, as seen from here, of the process that host `index` knows as `remotePID` (what
    /// `echo $$` printed there), or nil if there is none.
    func hostPID(ofRemotePID remotePID: Int32, inHost index: Int) -> Int32? {
        Self.pids(in: machines[index].namespace, tools: tools).first { pid in
            // "NSpid:" lists the pid in each PID namespace from the outermost in: here, there.
            guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
                let line = status.split(separator: "\n").first(where: { $0.hasPrefix("NSpid:") })
            else { return false }
            return line.split(whereSeparator: \.isWhitespace).last.flatMap { Int32($0) } == remotePID
        }
    }

    private static func pids(in namespace: String, tools: Tools) -> [Int32] {
        guard let listing = try? run([tools.ip, "netns", "pids", namespace]), listing.status == 0 else { return [] }
        return listing.output.split(whereSeparator: \.isWhitespace).compactMap { Int32($0) }
    }

    private static func parentPID(of pid: Int32) -> Int32? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("PPid:") })
        else { return nil }
        return Int32(line.dropFirst("PPid:".count).trimmingCharacters(in: .whitespaces))
    }

    /// SIGKILLs everything in `namespace`, again until nothing is left (a dying sshd may have
    /// forked a session meanwhile), for up to two seconds.
    private static func killEverything(in namespace: String, tools: Tools) {
        let deadline = ContinuousClock.now + .seconds(2)
        while ContinuousClock.now < deadline {
            let found = pids(in: namespace, tools: tools)
            if found.isEmpty { return }
            for pid in found { kill(pid, SIGKILL) }
            Thread.sleep(forTimeInterval: 0.005)
        }
    }

    /// Waits, polling briefly, up to two seconds for the `unshare`s to have exited and been
    /// reaped, so that nothing of ours is left running when `stop` returns.
    private static func waitForExits(_ launchers: [Process]) {
        let deadline = ContinuousClock.now + .seconds(2)
        for launcher in launchers {
            if launcher.isRunning { kill(launcher.processIdentifier, SIGKILL) }
            while launcher.isRunning && ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.002) }
        }
    }

    // MARK: Stopping

    /// Kills everything in the namespaces, deletes them, their veths and routes, and removes
    /// the temporary directory. Safe to call more than once; `deinit` calls it too.
    func stop() {
        let first = stopped.withLock { stopped in
            defer { stopped = true }
            return !stopped
        }
        guard first else { return }
        for machine in machines { Self.tearDown(machine, tools: tools) }
        launchers.withLock { Self.waitForExits($0) }
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Undoes `allocate`, `bringUp` and `launchSSHD` for one machine, whatever part of them
    /// was done.
    private static func tearDown(_ machine: Machine, tools: Tools) {
        // Killing sshd, the PID namespace's init, makes the kernel kill the rest of it; the
        // loop catches anything in the network namespace outside it.
        killEverything(in: machine.namespace, tools: tools)
        // Deleting one end deletes the pair at once; deleting only the namespace would leave the
        // pair to the kernel's asynchronous namespace cleanup.
        _ = try? run([tools.ip, "link", "delete", machine.link])
        _ = try? run([tools.ip, "netns", "delete", machine.namespace])
        _ = try? run([tools.ip, "route", "delete", "blackhole", machine.subnet, "metric", "\(claimMetric)"])
    }

    /// Removes what test processes that died without `stop` (a crash, a SIGKILL) left: their
    /// namespaces with the sshds in them, their routes and their temporary directories. Only
    /// what is named after a pid that no longer exists is touched.
    private static func removeLeftovers(tools: Tools) {
        func ownerIsGone(_ name: Substring) -> Bool {
            guard let pid = Int32(name.prefix { $0.isNumber }), pid != getpid() else { return false }
            return kill(pid, 0) == -1 && errno == ESRCH
        }
        if let listing = try? run([tools.ip, "netns", "list"]) {
            for line in listing.output.split(separator: "\n") {
                guard let namespace = line.split(separator: " ").first, namespace.hasPrefix(namespacePrefix),
                    ownerIsGone(namespace.dropFirst(namespacePrefix.count))
                else { continue }
                // Its subnet is known only from the address inside it.
                let inside = try? run([tools.ip, "-n", String(namespace), "-4", "-o", "addr", "show", "dev", "eth0"])
                let words = inside?.output.split(separator: " ") ?? []
                if let index = words.firstIndex(of: "inet"), index + 1 < words.count,
                    let address = parse(words[index + 1].split(separator: "/")[0])
                {
                    _ = try? run([tools.ip, "route", "delete", "blackhole", "\(dotted(address & ~3))/30", "metric", "\(claimMetric)"])
                }
                killEverything(in: String(namespace), tools: tools)
                _ = try? run([tools.ip, "netns", "delete", String(namespace)])
            }
        }
        let base = FileManager.default.temporaryDirectory.path
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: base)) ?? []
        where entry.hasPrefix(directoryPrefix) && ownerIsGone(entry.dropFirst(directoryPrefix.count)) {
            try? FileManager.default.removeItem(atPath: base + "/" + entry)
        }
    }

    // MARK: Running commands

    /// Runs `arguments` (the first found on PATH or in the sbin directories unless it has a
    /// slash) to completion, with stdin from /dev/null, and returns its status and output.
    static func run(_ arguments: [String]) throws -> CommandResult {
        let output = Pipe()
        let errors = Pipe()
        // Not `waitUntilExit`: it runs this thread's run loop in 50-ms slices and, while a
        // process this thread started is still running (an ssh session, say), sleeps out every
        // slice: each `ip` took 55 ms instead of 2.5.
        let exited = DispatchSemaphore(value: 0)
        let process = try launch(arguments, standardOutput: output, standardError: errors) { _ in exited.signal() }
        // stderr is read on a thread of its own so that neither pipe can fill and stall the child.
        let errorData = Mutex(Data())
        let errorsRead = DispatchSemaphore(value: 0)
        Thread {
            errorData.withLock { $0 = errors.fileHandleForReading.readDataToEndOfFile() }
            errorsRead.signal()
        }.start()
        let outputData = output.fileHandleForReading.readDataToEndOfFile()
        exited.wait()
        errorsRead.wait()
        return CommandResult(
            status: process.terminationStatus,
            output: String(decoding: outputData, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines),
            errors: errorData.withLock { String(decoding: $0, as: UTF8.self) }.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// Starts `arguments` (found as `run` finds it) under `sh`, with stdin from /dev/null, and
    /// returns the running `sh`; it exits with the command's status once the command has ended.
    ///
    /// Why `sh`: Foundation's `Process` learns that a child has ended when the child's copy of
    /// a private socket closes, and then waits for it with a blocking `waitpid` on the one
    /// thread that handles every `Process` of this test process. `ssh` closes all inherited
    /// descriptors as it starts, so an `ssh` launched directly holds that thread, and with it
    /// every other `Process`'s exit here, until the ssh ends: a 30-second session stalled a
    /// 5-ms `ip` for 30 seconds. `sh` keeps the socket open until the command is over. (Killing
    /// the returned process kills the `sh`, not the command.)
    static func launch(
        _ arguments: [String], standardOutput: Any?, standardError: Any?, terminationHandler: (@Sendable (Process) -> Void)? = nil
    ) throws -> Process {
        guard let executable = executablePath(arguments[0]) else {
            throw Failure(description: "\(arguments[0]): not found on PATH or in /usr/sbin, /sbin")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        // `; exit $?` keeps sh from replacing itself with the command.
        process.arguments = ["-c", "\"$@\"; exit $?", "sh", executable] + arguments.dropFirst()
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
}

@Suite("SSH test hosts: sshds in network namespaces", .timeLimit(.minutes(1)))
struct SSHTestHostsTests {
    @Test("each host answers from its own address; a cut link stops answering until restored; stop leaves nothing")
    func hostsAnswerAndCut() async throws {
        let hosts = try await onDedicatedThread { try SSHTestHosts.start(count: 2) }
        // Blocking calls run on threads of their own, never on the cooperative pool.
        func ssh(_ arguments: String...) async throws -> SSHTestHosts.CommandResult {
            try await onDedicatedThread { try SSHTestHosts.run(hosts.sshCommand + arguments) }
        }
        let listeners = try await onDedicatedThread { (0..<2).compactMap { hosts.sshdPID(ofHost: $0) } }
        #expect(listeners.count == 2)

        for index in 0..<2 {
            // `hostname -I` lists the addresses of the namespace the command runs in.
            let answer = try await ssh(hosts.names[index], "hostname", "-I")
            #expect(answer.status == 0, "\(answer.errors)")
            #expect(answer.output.split(separator: " ").map(String.init) == [hosts.addresses[index]])
        }

        try await onDedicatedThread { try hosts.cutLink(1) }
        let cut = try await ssh("-o", "ConnectTimeout=1", hosts.names[1], "true")
        #expect(cut.status != 0)
        #expect(try await ssh(hosts.names[0], "true").status == 0, "the other host is not cut off")

        try await onDedicatedThread { try hosts.restoreLink(1) }
        let restored = try await ssh(hosts.names[1], "true")
        #expect(restored.status == 0, "\(restored.errors)")

        try await onDedicatedThread { hosts.stop() }
        let namespaces = try await onDedicatedThread { try SSHTestHosts.run(["ip", "netns", "list"]).output }
        for namespace in hosts.namespaces {
            #expect(!namespaces.contains(namespace), "\(namespace) is still there")
        }
        for link in hosts.hostSideLinks {
            #expect(!FileManager.default.fileExists(atPath: "/sys/class/net/" + link), "\(link) is still there")
        }
        for pid in listeners {
            // Gone entirely, not a zombie: waitForExit would accept a zombie.
            #expect(!processExists(pid), "sshd \(pid) is still there")
        }
        #expect(!FileManager.default.fileExists(atPath: hosts.directory))
        hosts.stop()  // idempotent
    }

    @Test("processes(inHost:) sees a session's command; killSSHD kills it with the listener")
    func killSSHDKillsEverything() async throws {
        let hosts = try await onDedicatedThread { try SSHTestHosts.start(count: 1) }
        // A session that stays: the remote shell prints its pid, then becomes `sleep`.
        let output = Pipe()
        let session = try SSHTestHosts.launch(
            hosts.sshCommand + [hosts.names[0], "echo $$; exec sleep 30"], standardOutput: output, standardError: FileHandle.nullDevice)
        let printed = try await onDedicatedThread { String(decoding: output.fileHandleForReading.availableData, as: UTF8.self) }
        let remotePID = try #require(Int32(printed.trimmingCharacters(in: .whitespacesAndNewlines)), "\(printed)")

        let (sleeper, inside, listener) = try await onDedicatedThread {
            (hosts.hostPID(ofRemotePID: remotePID, inHost: 0), hosts.processes(inHost: 0), hosts.sshdPID(ofHost: 0))
        }
        let sleeperPID = try #require(sleeper)
        #expect(remotePID != sleeperPID, "the host has a PID namespace of its own")
        #expect(inside.contains(sleeperPID))
        #expect(listener.map { !inside.contains($0) } == true, "the listener is not among the processes")

        let (after, listenerAfter) = try await onDedicatedThread {
            hosts.killSSHD(0)
            return (hosts.processes(inHost: 0), hosts.sshdPID(ofHost: 0))
        }
        #expect(after.isEmpty)
        #expect(listenerAfter == nil)
        // The client sees its connection close and exits.
        #expect(await awaitExit(of: session.processIdentifier, timeout: .seconds(5)))
        let refused = try await onDedicatedThread { try SSHTestHosts.run(hosts.sshCommand + [hosts.names[0], "true"]) }
        #expect(refused.status != 0)
        try await onDedicatedThread { hosts.stop() }
    }
}
