import Synchronization

/// A machine a pool runs workers on: how to reach it, and how many workers it runs.
///
/// A remote host gets one connection, which starts the worker binary there in agent mode; the
/// agent spawns the host's workers and relays their streams over that connection. So crash
/// isolation, timeouts, retries, recycling and memory limits behave there as they do here.
///
/// ```swift
/// var configuration = ProcessPoolConfiguration(executablePath: "/opt/app/worker")
/// configuration.hosts = [.local(slots: 4), .ssh("alice@node1", slots: 16)]
/// ```
public struct WorkerHost: Hashable, Sendable, CustomStringConvertible {
    /// How the coordinator reaches the machine.
    public enum Transport: Hashable, Sendable {
        /// This machine: workers are spawned directly.
        case local
        /// `command` (ssh and its options, one argument each) to `destination`
        /// (`[user@]host`, or an alias of the ssh configuration).
        case ssh(destination: String, command: [String])
        /// A node of the current Slurm allocation, reached with one `srun` job step.
        case slurmNode(String)
        /// Any command that runs its arguments on the machine and carries stdin and stdout
        /// byte for byte, such as `["kubectl", "exec", "-i", "pod-1", "--"]`; `name` names the
        /// machine in errors.
        case launcher(command: [String], name: String)
    }

    /// How the machine is reached.
    public var transport: Transport
    /// How many workers run there at once.
    public var slots: Int
    /// The worker binary's path on that machine; nil: the same path as on this one (a shared
    /// file system, or a copy installed at the same place).
    public var workerPath: String?
    /// A folder on the host to copy the worker binary into, relative to the login's home
    /// directory unless absolute (such as `.cache/swift-multiprocessing`), for hosts that do not
    /// have it (GNU parallel's `--basefile`, Slurm's `sbcast`). The copy is named by the
    /// binary's SHA-256 and made only when no copy of that content is there yet, over the
    /// host's one connection. nil (the default): the binary is there already (``workerPath``).
    /// A binary built with `--static-swift-stdlib` needs no Swift on the host. For ssh and
    /// launcher hosts; Slurm nodes read a shared file system or `sbcast`.
    public var workerCache: String?

    /// A host reached by `transport`, running `slots` workers.
    public init(_ transport: Transport, slots: Int, workerPath: String? = nil, workerCache: String? = nil) {
        self.transport = transport
        self.slots = slots
        self.workerPath = workerPath
        self.workerCache = workerCache
    }

    /// This machine, running `slots` workers.
    public static func local(slots: Int) -> WorkerHost {
        WorkerHost(.local, slots: slots)
    }

    /// A machine reached with `ssh`.
    ///
    /// - Parameters:
    ///   - destination: `[user@]host` or an alias from the ssh configuration; a port goes in
    ///     `command` (`["ssh", "-p", "2222"]`).
    ///   - slots: How many workers run there at once.
    ///   - command: The ssh program and its options.
    ///   - workerPath: The worker binary's path there; nil: the same as here.
    public static func ssh(_ destination: String, slots: Int, command: [String] = ["ssh"], workerPath: String? = nil) -> WorkerHost {
        WorkerHost(.ssh(destination: destination, command: command), slots: slots, workerPath: workerPath)
    }

    /// The nodes of the Slurm allocation this process runs in (under `salloc` or `sbatch`),
    /// each with the processors Slurm allotted there as its slots: read from
    /// `SLURM_JOB_NODELIST` (such as `node[01-04,07]`) and `SLURM_JOB_CPUS_PER_NODE` (such as
    /// `72(x2),36`). Each node is reached with one `srun --overlap` job step, whose agent
    /// calls this process back over TCP.
    ///
    /// - Parameter environment: Where to read the variables; this process's by default.
    /// - Throws: ``ProcessPoolError`` with ``ProcessPoolError/Code/invalidConfiguration`` when
    ///   the variables are missing, cannot be read, or disagree.
    public static func slurmAllocation(environment: [String: String]? = nil) throws(ProcessPoolError) -> [WorkerHost] {
        var variables: [String: String] = [:]
        if let environment {
            variables = environment
        } else {
            for entry in currentEnvironment() where entry.hasPrefix("SLURM_") {
                let parts = entry.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                if parts.count == 2 { variables[String(parts[0])] = String(parts[1]) }
            }
        }
        do {
            return try SlurmHostList.allocation(environment: variables).map { $0.workerHost(defaultSlots: 1) }
        } catch {
            throw ProcessPoolError(.invalidConfiguration, error.description)
        }
    }

    /// The machine's name in errors and reports.
    public var description: String {
        switch transport {
        case .local: return ":"
        case .ssh(let destination, _): return destination
        case .slurmNode(let node): return node
        case .launcher(_, let name): return name
        }
    }

    var isLocal: Bool { transport == .local }

    /// Where an agent that calls back over TCP is reached from: a Slurm node's, whose job
    /// step's stdout holds binary bytes back until a newline (and, with `srun -u`, delays
    /// every write of 1 KiB or more by about 44 ms).
    var callbackPeer: String? {
        if case .slurmNode(let node) = transport { return node }
        return nil
    }
}

/// A remote host's connection changed (``ProcessPoolConfiguration/hostEventHandler``).
public enum HostEvent: Sendable, Equatable {
    /// The host's agent answered: workers start there.
    case up(WorkerHost)
    /// The host cannot be reached or was lost, for `reason` (the transport's last words and its
    /// exit status, or the heartbeats that went unanswered); its jobs run elsewhere, and it is
    /// tried again after `retryIn`.
    case down(WorkerHost, reason: String, retryIn: Duration)
}

extension WorkerHost {
    /// The command line that starts the agent on the host: the transport, then the worker
    /// binary with the variable that makes it an agent.
    ///
    /// - Parameters:
    ///   - executable: The worker binary's path here, used there when ``workerPath`` is nil.
    ///   - arguments: The worker's arguments.
    ///   - deployed: The binary to copy into ``workerCache`` first, when it is set.
    func agentCommand(executable: String, arguments: [String], deployed: DeployedBinary? = nil) -> [String] {
        let variable = "\(AgentProtocol.agentEnvironmentKey)=\(AgentProtocol.version)"
        if let deployed, let workerCache {
            let script = Self.deployingScript(deployed, cache: workerCache, variable: variable, arguments: arguments)
            switch transport {
            case .ssh(let destination, let command):
                return command + [destination, "exec sh -c " + ShellQuoting.quote(script)]
            case .launcher(let command, _):
                return command + ["sh", "-c", script]
            case .local, .slurmNode:
                break  // refused by validate()
            }
        }
        let program = workerPath ?? executable
        // `env` takes every word with a `=` before the program for a variable; a path with one
        // in it goes through `sh`, which runs it whatever its name.
        let agent = program.contains("=")
            ? ["env", variable, "sh", "-c", "exec \"$0\" \"$@\"", program] + arguments
            : ["env", variable, program] + arguments
        switch transport {
        case .local:
            return agent
        case .ssh(let destination, let command):
            // ssh joins its arguments into one line for the remote shell: quote each, and
            // `exec` so the shell does not stay between sshd and the agent.
            return command + [destination, "exec " + agent.map(ShellQuoting.quote).joined(separator: " ")]
        case .slurmNode(let node):
            // One step per node for the whole run; `--overlap` lets it share the node's CPUs with
            // other steps, and the workers are the agent's children, inside the step.
            return ["srun", "--nodes=1", "--ntasks=1", "--nodelist=\(node)", "--overlap", "--kill-on-bad-exit=1", "--quiet"] + agent
        case .launcher(let command, _):
            return command + agent
        }
    }

    /// A shell script that runs the cached copy of the binary as the agent, first asking for
    /// it (a line `SWMA-SEND` on stdout) and reading exactly its bytes from stdin when the
    /// host has no copy of that content. Exit status 126 when the copy cannot be made.
    static func deployingScript(_ binary: DeployedBinary, cache: String, variable: String, arguments: [String]) -> String {
        let folder = cache.hasPrefix("/") ? ShellQuoting.quote(cache) : "\"$HOME\"/" + ShellQuoting.quote(cache)
        let file = "\"$d\"/" + ShellQuoting.quote(binary.fileName)
        // One line (csh and tcsh refuse a newline inside quotes). A copy cut short (the
        // connection ended) never takes the binary's name: its size is checked first, and the
        // part is removed on any exit.
        let part = "\"$f.part.$$\""
        return [
            "d=\(folder)/\(binary.hash)",
            "f=\(file)",
            "if [ ! -x \"$f\" ]; then mkdir -p \"$d\" && trap 'rm -f \(part)' EXIT && printf '\(DeployedBinary.request)\\n' && head -c \(binary.size) > \(part) && [ \"$(wc -c < \(part))\" -eq \(binary.size) ] && chmod 755 \(part) && mv -f \(part) \"$f\" || exit 126; trap - EXIT; fi",
            "export \(variable)",
            "exec \"$f\"" + arguments.map { " " + ShellQuoting.quote($0) }.joined(),
        ].joined(separator: "; ")
    }
}

/// The worker binary a pool copies to its hosts, read and hashed once, by the first host's
/// connection that needs it.
final class DeploymentSource: Sendable {
    let path: String
    private let binary = Mutex<Result<DeployedBinary, SystemCallError>?>(nil)

    init(path: String) { self.path = path }

    func read() throws(SystemCallError) -> DeployedBinary {
        try binary.withLock { binary throws(SystemCallError) in
            if binary == nil { binary = Result { () throws(SystemCallError) in try DeployedBinary(path: path) } }
            return try binary!.get()
        }
    }
}

/// A worker binary to copy to hosts, named by its content.
struct DeployedBinary: Sendable {
    /// What the host's script prints when it has no copy: then the bytes follow on its stdin.
    static let request = "SWMA-SEND"

    let localPath: String
    let fileName: String
    let size: Int
    /// SHA-256 of the content, in hex.
    let hash: String
    let content: [UInt8]

    /// Reads and hashes the binary at `path`.
    init(path: String) throws(SystemCallError) {
        let file = try FileDescriptor.open(readingFrom: path)
        var content: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        var failure: SystemCallError?
        while true {
            let result = chunk.withUnsafeMutableBytes { bytes in
                Result { () throws(SystemCallError) in try file.readWaiting(into: bytes) }
            }
            switch result {
            case .success(let count) where count > 0:
                content += chunk[..<count]
                continue
            case .success:
                break
            case .failure(let error):
                failure = error
            }
            break
        }
        file.close()
        if let failure { throw failure }
        var digest = SHA256()
        digest.update(content)
        localPath = path
        fileName = path.split(separator: "/").last.map(String.init) ?? "worker"
        size = content.count
        hash = digest.finalizeHex()
        self.content = content
    }
}

/// Quoting for a POSIX shell.
enum ShellQuoting {
    /// `text` as one word for `sh`: unchanged when it is only safe characters, otherwise in
    /// single quotes, each `'` written as `'\''`.
    static func quote(_ text: String) -> String {
        let safe = text.utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                return true
            case UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "/"), UInt8(ascii: "="), UInt8(ascii: ":"), UInt8(ascii: ","), UInt8(ascii: "+"), UInt8(ascii: "@"):
                return true
            default:
                return false
            }
        }
        if safe && !text.isEmpty { return text }
        return "'" + text.replacing("'", with: "'\\''") + "'"
    }
}

extension WorkerHost {
    /// Checks what would otherwise fail obscurely on the host: empty commands, names that the
    /// transport would read as options, NUL bytes.
    func validate(at index: Int) throws(ProcessPoolError) {
        func refuse(_ problem: String) -> ProcessPoolError {
            ProcessPoolError(.invalidConfiguration, "hosts[\(index)] (\(self)): \(problem)")
        }
        func checkWord(_ word: String, _ what: String) throws(ProcessPoolError) {
            if word.isEmpty { throw refuse("\(what) is empty") }
            if word.utf8.contains(0) { throw refuse("\(what) contains a NUL byte") }
        }
        switch transport {
        case .local:
            break
        case .ssh(let destination, let command):
            try checkWord(destination, "the destination")
            if destination.hasPrefix("-") { throw refuse("the destination starts with '-', which ssh would read as an option") }
            guard let program = command.first else { throw refuse("the ssh command is empty") }
            try checkWord(program, "the ssh program")
        case .slurmNode(let node):
            try checkWord(node, "the node name")
            if node.hasPrefix("-") { throw refuse("the node name starts with '-'") }
        case .launcher(let command, let name):
            guard let program = command.first else { throw refuse("the launcher command is empty") }
            try checkWord(program, "the launcher program")
            try checkWord(name, "the name")
        }
        if let workerPath { try checkWord(workerPath, "the worker path") }
        if let workerCache {
            try checkWord(workerCache, "the worker cache folder")
            switch transport {
            case .ssh, .launcher: break
            case .local: throw refuse("this machine needs no copy of the worker binary (workerCache)")
            case .slurmNode: throw refuse("workerCache is for ssh and launcher hosts; on Slurm nodes use a shared file system or sbcast")
            }
            if workerPath != nil { throw refuse("workerPath and workerCache both say where the binary is: give one") }
        }
    }
}
