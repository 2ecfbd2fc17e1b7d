import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Scenario j's two "remote hosts": a private sshd of this run's own, listening on 127.0.0.1
/// and 127.0.0.2, with every key and configuration file in a temporary folder, and an ssh
/// configuration naming the addresses `node1` and `node2` (`ssh -F <configPath> node1 CMD`).
///
/// A watchdog (`/bin/sh` blocked reading a pipe from this process) kills sshd when the pipe
/// ends, so a suite that crashes or is killed leaves no sshd listening either.
final class LoopbackSSH {
    /// The hosts' names in `configPath`, and the addresses they stand for.
    static let hosts = [(name: "node1", address: "127.0.0.1"), (name: "node2", address: "127.0.0.2")]

    private var directory: String?
    private var sshd: Child?
    private var watchdog: Child?
    private var watchdogInput: Int32?

    /// The ssh configuration that names the hosts; empty until `start` has succeeded.
    private(set) var configPath = ""
    /// The ssh program and its options, one argument each, as `WorkerHost.ssh` takes them.
    var sshCommand: [String] { ["ssh", "-F", configPath] }

    /// Generates the keys, writes the configurations, starts sshd and checks that both hosts
    /// take a key login.
    ///
    /// - Throws: ``BenchmarkError`` saying what is missing or what sshd or ssh said.
    func start() throws {
        guard geteuid() == 0 else { throw BenchmarkError("needs root (the private sshd logs in as root)") }
        let sshd = "/usr/sbin/sshd"
        guard FileManager.default.isExecutableFile(atPath: sshd) else { throw BenchmarkError("\(sshd) is not installed (openssh-server)") }
        guard let ssh = which("ssh"), let keygen = which("ssh-keygen") else { throw BenchmarkError("ssh or ssh-keygen is not installed (openssh-client)") }

        var template = Array((NSTemporaryDirectory() + "bench-ssh-XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else { throw BenchmarkError("mkdtemp failed: \(String(cString: strerror(errno)))") }
        let directory = String(cString: made)
        self.directory = directory

        for key in ["host_key", "client_key"] {
            let (status, errors) = try Child.run(keygen, ["-q", "-t", "ed25519", "-N", "", "-C", "bench", "-f", "\(directory)/\(key)"])
            guard status == 0 else { throw BenchmarkError("ssh-keygen failed: \(errors)") }
        }
        try FileManager.default.copyItem(atPath: "\(directory)/client_key.pub", toPath: "\(directory)/authorized_keys")

        guard let port = Self.freePort() else { throw BenchmarkError("no free port on \(Self.hosts.map(\.address).joined(separator: " and "))") }
        let listen = Self.hosts.map { "ListenAddress \($0.address):\(port)" }.joined(separator: "\n")
        // StrictModes: the keys are under /tmp. SetEnv SHLVL=1: bash then skips root's .bashrc
        // (slow here, and anything it prints would corrupt the byte stream). MaxSessions and
        // MaxStartups: the defaults (10, 10:30:60) drop connections opened in quick succession.
        try """
            \(listen)
            HostKey \(directory)/host_key
            PidFile none
            AuthorizedKeysFile \(directory)/authorized_keys
            StrictModes no
            UsePAM no
            PasswordAuthentication no
            KbdInteractiveAuthentication no
            PubkeyAuthentication yes
            PermitRootLogin prohibit-password
            SetEnv SHLVL=1
            MaxSessions 100
            MaxStartups 100:30:200
            PrintMotd no

            """.write(toFile: "\(directory)/sshd_config", atomically: true, encoding: .utf8)
        let aliases = Self.hosts.map { "Host \($0.name)\n    HostName \($0.address)" }.joined(separator: "\n")
        try """
            \(aliases)
            Host *
                Port \(port)
                User root
                IdentityFile \(directory)/client_key
                IdentitiesOnly yes
                StrictHostKeyChecking no
                UserKnownHostsFile /dev/null
                GlobalKnownHostsFile /dev/null
                BatchMode yes
                ConnectTimeout 10
                LogLevel ERROR

            """.write(toFile: "\(directory)/ssh_config", atomically: true, encoding: .utf8)

        // sshd refuses to start without its privilege-separation folder.
        try FileManager.default.createDirectory(atPath: "/run/sshd", withIntermediateDirectories: true)
        let (status, errors) = try Child.run(sshd, ["-t", "-f", "\(directory)/sshd_config"])
        guard status == 0 else { throw BenchmarkError("sshd -t rejected the configuration: \(errors)") }

        // In the foreground (-D), logging to a file (-E); absolute paths, as sshd re-executes
        // itself for each connection.
        let server = try Child(sshd, ["-D", "-f", "\(directory)/sshd_config", "-E", "\(directory)/sshd.log"])
        self.sshd = server
        let toWatchdog = try Child.pipe()
        watchdog = try Child("/bin/sh", ["-c", "read line; kill \"$0\" 2>/dev/null", String(server.pid)], standardInput: toWatchdog.read)
        close(toWatchdog.read)
        watchdogInput = toWatchdog.write

        // Ready when both hosts take a login; until sshd listens, ssh fails at once.
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(10)
        for host in Self.hosts {
            while true {
                let (status, errors) = try Child.run(ssh, ["-F", "\(directory)/ssh_config", host.name, "true"])
                if status == 0 { break }
                guard clock.now < deadline else {
                    let log = (try? String(contentsOfFile: "\(directory)/sshd.log", encoding: .utf8)) ?? ""
                    throw BenchmarkError("ssh \(host.name) true failed: \(errors.trimmingCharacters(in: .whitespacesAndNewlines)); sshd's log: \(log.suffix(300))")
                }
                usleep(50_000)
            }
        }
        configPath = "\(directory)/ssh_config"
    }

    /// Stops sshd and removes the folder.
    func stop() {
        if let sshd { kill(sshd.pid, SIGTERM) }
        if let watchdogInput { close(watchdogInput) }
        _ = watchdog?.wait()
        _ = sshd?.wait()
        watchdog = nil
        watchdogInput = nil
        sshd = nil
        if let directory { try? FileManager.default.removeItem(atPath: directory) }
        directory = nil
        configPath = ""
    }

    /// A port that is free on every host's address, picked at random above 20000.
    private static func freePort() -> UInt16? {
        for _ in 0..<50 {
            let port = UInt16.random(in: 20_000...60_000)
            if hosts.allSatisfy({ portIsFree(port, on: $0.address) }) { return port }
        }
        return nil
    }

    private static func portIsFree(_ port: UInt16, on address: String) -> Bool {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        var socketAddress = sockaddr_in()
        socketAddress.sin_family = sa_family_t(AF_INET)
        socketAddress.sin_port = port.bigEndian
        guard inet_pton(AF_INET, address, &socketAddress.sin_addr) == 1 else { return false }
        return withUnsafePointer(to: &socketAddress) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }
}

/// A child process started with posix_spawn rather than Foundation's `Process`, which takes a
/// child for ended when the child closes a descriptor it inherited, then blocks in `waitpid`
/// until it really has, and meanwhile sees no other child end: sshd and ssh close every
/// inherited descriptor as they start. Its signals start unblocked and at their defaults
/// (the threads of this process block most of theirs, and a child inherits the mask).
struct Child {
    let pid: pid_t

    /// Starts `path` with `arguments`; a standard stream not given is /dev/null (stderr: this
    /// process's).
    init(_ path: String, _ arguments: [String], standardInput: Int32? = nil, standardOutput: Int32? = nil, standardError: Int32? = nil) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for (target, given) in [(Int32(0), standardInput), (1, standardOutput), (2, standardError)] {
            if let given {
                posix_spawn_file_actions_adddup2(&actions, given, target)
            } else if target != 2 {
                posix_spawn_file_actions_addopen(&actions, target, "/dev/null", target == 0 ? O_RDONLY : O_WRONLY, 0)
            }
        }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var signals = sigset_t()
        sigemptyset(&signals)
        posix_spawnattr_setsigmask(&attributes, &signals)
        sigfillset(&signals)
        posix_spawnattr_setsigdefault(&attributes, &signals)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let argv = ([path] + arguments).map { strdup($0) }
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let code = posix_spawn(&pid, path, &actions, &attributes, argv + [nil], environ)
        guard code == 0 else { throw BenchmarkError("cannot start \(path): \(String(cString: strerror(code)))") }
        self.pid = pid
    }

    /// Waits for it to end: its exit status, or 128 + the signal that ended it.
    func wait() -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            if errno != EINTR { return -1 }
        }
        return status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    }

    /// A pipe whose ends are closed on exec (a child gets only what it is given).
    static func pipe() throws -> (read: Int32, write: Int32) {
        var ends: [Int32] = [0, 0]
        guard Glibc.pipe(&ends) == 0 else { throw BenchmarkError("pipe failed: \(String(cString: strerror(errno)))") }
        for end in ends { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        return (ends[0], ends[1])
    }

    /// Runs a program to completion with its output discarded; returns its exit status and
    /// what it wrote to stderr.
    static func run(_ path: String, _ arguments: [String]) throws -> (status: Int32, errors: String) {
        let errors = try pipe()
        let child: Child
        do {
            child = try Child(path, arguments, standardError: errors.write)
        } catch {
            close(errors.read)
            close(errors.write)
            throw error
        }
        close(errors.write)
        var text: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(errors.read, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { break }
            text += chunk[..<count]
        }
        close(errors.read)
        return (child.wait(), String(decoding: text, as: UTF8.self))
    }
}

/// `ssh HOST cat`, started once: the ssh connection's own round trip and bandwidth, the limit
/// of any pool that sends its frames through it (as `RawPipe` is for a pipe).
final class SSHCat {
    private let child: Child
    private var toRemote: Int32
    private let fromRemote: Int32

    init(sshCommand: [String], host: String) throws {
        guard let program = sshCommand.first.flatMap({ $0.hasPrefix("/") ? $0 : which($0) }) else { throw BenchmarkError("ssh is not installed") }
        let input = try Child.pipe()
        let output = try Child.pipe()
        // 1 MiB, as the pool asks for its transport's pipes (F_SETPIPE_SZ, which Glibc's module
        // does not export).
        let setPipeSize: Int32 = 1024 + 7
        _ = fcntl(input.write, setPipeSize, 1 << 20)
        _ = fcntl(output.write, setPipeSize, 1 << 20)
        defer {
            close(input.read)
            close(output.write)
        }
        do {
            child = try Child(program, Array(sshCommand.dropFirst()) + [host, "cat"], standardInput: input.read, standardOutput: output.write)
        } catch {
            close(input.write)
            close(output.read)
            throw error
        }
        toRemote = input.write
        fromRemote = output.read
    }

    /// Closes the connection's input: the remote `cat` ends, then ssh.
    func finish() {
        if toRemote >= 0 { close(toRemote) }
        toRemote = -1
        _ = child.wait()
        close(fromRemote)
    }

    /// Round trips of `size` bytes: write them, read them back. The first `warmUp` (which
    /// wait for the connection to come up) are not timed. Returns each in seconds.
    func roundTrips(size: Int, count: Int, warmUp: Int = 200) throws -> [Double] {
        let message = [UInt8](repeating: UInt8(ascii: "x"), count: size)
        var buffer = [UInt8](repeating: 0, count: size)
        var samples: [Double] = []
        samples.reserveCapacity(count)
        let clock = ContinuousClock()
        for index in 0..<(warmUp + count) {
            let start = clock.now
            try Self.writeAll(toRemote, message)
            try readExactly(&buffer)
            if index >= warmUp { samples.append(seconds(clock.now - start)) }
        }
        guard buffer == message else { throw BenchmarkError("ssh cat sent back other bytes") }
        return samples
    }

    /// Sends `count` blocks of `size` bytes and reads each back before sending the next (a
    /// thread writes the block while this one reads it: `cat` answers as the bytes arrive).
    /// Returns MiB/s of blocks sent and received, after one untimed block.
    func bandwidth(count: Int, size: Int) throws -> Double {
        let message = [UInt8](repeating: UInt8(ascii: "x"), count: size)
        var buffer = [UInt8](repeating: 0, count: size)
        try roundTrip(message, &buffer)  // the connection coming up is not the bandwidth
        let clock = ContinuousClock()
        let start = clock.now
        for _ in 0..<count { try roundTrip(message, &buffer) }
        let elapsed = seconds(clock.now - start)
        guard buffer == message else { throw BenchmarkError("ssh cat sent back other bytes") }
        return Double(count * size) / 1_048_576 / elapsed
    }

    private func roundTrip(_ message: [UInt8], _ buffer: inout [UInt8]) throws {
        let group = DispatchGroup()
        let descriptor = toRemote
        DispatchQueue.global().async(group: group) { try? Self.writeAll(descriptor, message) }
        try readExactly(&buffer)
        group.wait()
    }

    private static func writeAll(_ descriptor: Int32, _ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress! + offset, bytes.count - offset) }
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else { throw BenchmarkError("ssh stopped reading") }
            offset += written
        }
    }

    private func readExactly(_ buffer: inout [UInt8]) throws {
        var offset = 0
        let count = buffer.count
        let descriptor = fromRemote
        while offset < count {
            let got = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress! + offset, count - offset) }
            if got < 0 && errno == EINTR { continue }
            guard got > 0 else { throw BenchmarkError("ssh cat ended after \(offset) of \(count) bytes") }
            offset += got
        }
    }
}
