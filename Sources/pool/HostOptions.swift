import Foundation
import Multiprocessing

/// The options that name other machines to run on, shared by `pool run` and `pool map`:
/// GNU parallel's `-S`/`--sshlogin`, `--sshloginfile`/`--slf` and `--ssh`, and `--slurm` for
/// the nodes of the Slurm allocation the command runs in.
struct HostOptions {
    /// `-S` values, in order.
    var logins: [String] = []
    /// `--slf` files, in order.
    var loginFiles: [String] = []
    /// `--ssh`: the ssh command, split at blanks.
    var sshCommand: [String] = ["ssh"]
    var usesSlurmAllocation = false
    /// `--worker-cache DIR`: copy the worker binary into DIR on ssh hosts that lack it.
    var workerCache: String?

    var namesHosts: Bool { !logins.isEmpty || !loginFiles.isEmpty || usesSlurmAllocation }

    /// Takes `option` if it is one of these; `value` gives its argument.
    ///
    /// - Returns: Whether it was.
    mutating func parse(_ option: String, value: () throws(UsageError) -> String) throws(UsageError) -> Bool {
        switch option {
        case "-S", "--sshlogin": logins.append(try value())
        case "--slf", "--sshloginfile": loginFiles.append(try value())
        case "--ssh":
            let text = try value()
            let words = text.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            guard !words.isEmpty else { throw UsageError("--ssh needs a command, such as 'ssh -F my_config'") }
            sshCommand = words
        case "--slurm": usesSlurmAllocation = true
        case "--filter-hosts":
            // GNU parallel's check that each host can be logged in to, leaving out those that
            // cannot: always done here, and a host left out is tried again later.
            break
        case "--worker-cache":
            let folder = try value()
            guard !folder.isEmpty else { throw UsageError("--worker-cache needs a folder, such as .cache/swift-multiprocessing") }
            workerCache = folder
        default: return false
        }
        return true
    }

    /// The hosts named, each with its slots: `N/` where the login gives it, otherwise
    /// `slots` (the `-j` value), as GNU parallel runs `-j` jobs on each machine; Slurm nodes
    /// get the processors Slurm allotted there.
    ///
    /// - Throws: ``UsageError`` naming the login or file that cannot be read.
    func hosts(slots: Int) throws(UsageError) -> [WorkerHost] {
        var parsed: [Multiprocessing.Host] = []
        do {
            for login in logins { parsed += try Multiprocessing.Host.parseLogins(login, sshCommand: sshCommand) }
            for path in loginFiles {
                guard let contents = FileManager.default.contents(atPath: path) else {
                    throw UsageError("cannot read the --sshloginfile \(path)")
                }
                parsed += try Multiprocessing.Host.parseLoginFile(String(decoding: contents, as: UTF8.self), sshCommand: sshCommand)
            }
            if usesSlurmAllocation { parsed += try SlurmHostList.allocation(environment: ProcessInfo.processInfo.environment) }
        } catch let error as HostSyntaxError {
            throw UsageError(error.description)
        } catch let error as UsageError {
            throw error
        } catch {
            throw UsageError("\(error)")
        }
        // The same machine named twice (by -S and a file) runs once, with the last slot count.
        var hosts: [WorkerHost] = []
        for host in parsed {
            var converted = host.workerHost(defaultSlots: slots)
            if case .ssh = converted.transport { converted.workerCache = workerCache }
            if let index = hosts.firstIndex(where: { $0.transport == converted.transport }) {
                if host.slots != nil { hosts[index].slots = converted.slots }
            } else {
                hosts.append(converted)
            }
        }
        return hosts
    }

    /// Says on stderr when a host goes down and when it comes back after being down.
    static func reportEvents(_ event: HostEvent) {
        switch event {
        case .down(let host, let reason, let retryIn):
            Output.write("pool: host \(host) is down: \(reason); trying again in \(retryIn.components.seconds) s\n", to: .standardError)
        case .up:
            break
        }
    }
}
