// The machines a pool may run workers on, and the syntaxes users name them in: GNU parallel's
// `--sshlogin` and `--sshloginfile`, and Slurm's host lists. Groundwork for workers on other
// machines: the parsers, not yet the transports.

/// A machine to run workers on, with how to reach it and how many jobs it runs at once.
package struct Host: Hashable, Sendable {
    /// How the coordinator reaches the machine.
    package enum Reach: Hashable, Sendable {
        /// This machine.
        case local
        /// `command` (ssh and its options, one argument each) to `[user@]host`, with ssh's
        /// `-p port` when a port is given.
        case ssh(command: [String], user: String?, host: String, port: String?)
        /// A node of the current Slurm allocation, reached with `srun`.
        case slurmNode(String)
    }

    package var reach: Reach
    /// Jobs it runs at once; nil: as many as it has processors.
    package var slots: Int?

    package init(_ reach: Reach, slots: Int? = nil) {
        self.reach = reach
        self.slots = slots
    }
}

/// A host description that cannot be read: what was wrong, and in which part.
package struct HostSyntaxError: Error, Equatable, CustomStringConvertible {
    package var description: String
    init(_ description: String) { self.description = description }
}

extension Host {
    /// The most slots one host may be given (`N/host`).
    package static let largestSlotCount = 1 << 20

    /// Hosts in GNU parallel's `--sshlogin` syntax: a comma-separated list (`\,` or `,,` is a
    /// comma in a name) of `[N/][sshcommand options ]{[user@]host[:port] | :}`, where `:` is this
    /// machine and N the slots. Repeated logins are merged, the last slot count winning.
    ///
    /// - Parameter sshCommand: The ssh command for logins that name none (`--ssh`).
    /// - Throws: ``HostSyntaxError`` naming the login that cannot be read.
    package static func parseLogins(_ text: String, sshCommand: [String] = ["ssh"]) throws(HostSyntaxError) -> [Host] {
        var hosts: [Host] = []
        for login in splitLogins(text) {
            let host = try parseLogin(login, sshCommand: sshCommand)
            if let index = hosts.firstIndex(where: { $0.reach == host.reach }) {
                if host.slots != nil { hosts[index].slots = host.slots }
            } else {
                hosts.append(host)
            }
        }
        return hosts
    }

    /// Hosts in an `--sshloginfile`: one login list per line; blank lines and lines starting
    /// with `#` are skipped.
    package static func parseLoginFile(_ text: String, sshCommand: [String] = ["ssh"]) throws(HostSyntaxError) -> [Host] {
        var lines: [String] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
            let trimmed = line.drop { $0 == " " || $0 == "\t" }
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            lines.append(String(trimmed))
        }
        return try parseLogins(lines.joined(separator: ","), sshCommand: sshCommand)
    }

    /// Splits a login list at commas, keeping `\,` and `,,` as commas inside a login.
    private static func splitLogins(_ text: String) -> [String] {
        var logins: [String] = []
        var current = ""
        var characters = text[...]
        while let character = characters.popFirst() {
            if character == "\\", characters.first == "," {
                current.append(characters.removeFirst())
            } else if character == ",", characters.first == "," {
                characters.removeFirst()
                current.append(",")
            } else if character == "," || character == "\n" {
                logins.append(current)
                current = ""
            } else {
                current.append(character)
            }
        }
        logins.append(current)
        let blank: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        return logins.map { String($0.drop(while: blank).reversed().drop(while: blank).reversed()) }.filter { !$0.isEmpty }
    }

    private static func parseLogin(_ login: String, sshCommand: [String]) throws(HostSyntaxError) -> Host {
        var rest = Substring(login)
        var slots: Int?
        if let slash = rest.firstIndex(of: "/"), rest[..<slash].allSatisfy(\.isASCIIDigit), slash != rest.startIndex {
            guard let count = Int(rest[..<slash]), (1...largestSlotCount).contains(count) else {
                throw HostSyntaxError("'\(login)': the slots before '/' must be a number from 1 to \(largestSlotCount)")
            }
            slots = count
            rest = rest[rest.index(after: slash)...]
        }
        // Everything up to the last space is the ssh command and its options.
        var command = sshCommand
        if let space = rest.lastIndex(of: " ") {
            command = rest[..<space].split(separator: " ").map(String.init)
            rest = rest[rest.index(after: space)...]
        }
        if rest == ":" { return Host(.local, slots: slots) }
        var user: String?
        if let at = rest.lastIndex(of: "@") {
            user = String(rest[..<at])
            rest = rest[rest.index(after: at)...]
            guard let user, !user.isEmpty else { throw HostSyntaxError("'\(login)': no user name before '@'") }
            if user.contains(":") { throw HostSyntaxError("'\(login)': passwords in a login are not taken; use ssh keys or an agent") }
            // ssh would read `-o...@host` as an option.
            if user.hasPrefix("-") { throw HostSyntaxError("'\(login)': a user name cannot start with '-'") }
        }
        var port: String?
        if rest.first == "[", let close = rest.firstIndex(of: "]") {
            // [IPv6 address]:port
            let address = rest[rest.index(after: rest.startIndex)..<close]
            let after = rest[rest.index(after: close)...]
            if after.first == ":" { port = String(after.dropFirst()) } else if !after.isEmpty {
                throw HostSyntaxError("'\(login)': unexpected '\(after)' after the address")
            }
            rest = address
        } else if rest.filter({ $0 == ":" }).count == 1, let colon = rest.firstIndex(of: ":") {
            port = String(rest[rest.index(after: colon)...])
            rest = rest[..<colon]
        }
        if let port, port.isEmpty || !port.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }) {
            throw HostSyntaxError("'\(login)': '\(port)' is not a port")
        }
        guard !rest.isEmpty, rest.allSatisfy({ $0.isLetter || $0.isNumber || "-._:".contains($0) }), rest.first != "-" else {
            throw HostSyntaxError("'\(login)': '\(rest)' is not a host name or address")
        }
        return Host(.ssh(command: command, user: user, host: String(rest), port: port), slots: slots)
    }
}

/// Slurm's notations for the nodes of an allocation and their processors.
package enum SlurmHostList {
    /// The most names one host list may expand to.
    package static let largestExpansion = 1 << 20

    /// The names in a Slurm host list (`SLURM_JOB_NODELIST`): `node[01-04,07],gpu3` is node01,
    /// node02, node03, node04, node07 and gpu3. Zero-padding is kept; several bracketed parts in
    /// one name make every combination, the last varying fastest.
    ///
    /// - Throws: ``HostSyntaxError`` naming the part that cannot be read.
    package static func expand(_ list: String) throws(HostSyntaxError) -> [String] {
        var names: [String] = []
        for entry in try splitTopLevel(list) where !entry.isEmpty {
            var expansions = [""]
            var rest = Substring(entry)
            while let open = rest.firstIndex(of: "[") {
                guard let close = rest[open...].firstIndex(of: "]") else { throw HostSyntaxError("'\(entry)': '[' without ']'") }
                let prefix = String(rest[..<open])
                let values = try expandRanges(rest[rest.index(after: open)..<close], in: String(entry))
                guard expansions.count * values.count <= largestExpansion else {
                    throw HostSyntaxError("'\(entry)' names more than \(largestExpansion) hosts")
                }
                expansions = expansions.flatMap { head in values.map { head + prefix + $0 } }
                rest = rest[rest.index(after: close)...]
            }
            if rest.contains("]") { throw HostSyntaxError("'\(entry)': ']' without '['") }
            names += expansions.map { $0 + rest }
            guard names.count <= largestExpansion else { throw HostSyntaxError("the host list names more than \(largestExpansion) hosts") }
        }
        return names
    }

    /// `SLURM_JOB_CPUS_PER_NODE`: `72(x2),36` is 72, 72 and 36, one count per node in the
    /// order of the node list.
    package static func expandCounts(_ text: String) throws(HostSyntaxError) -> [Int] {
        var counts: [Int] = []
        for part in text.split(separator: ",") {
            var count = part
            var repeats = 1
            if let open = part.firstIndex(of: "(") {
                guard part.hasSuffix(")"), part[part.index(after: open)...].hasPrefix("x"),
                      let times = Int(part[part.index(open, offsetBy: 2)..<part.index(before: part.endIndex)]), (1...largestExpansion).contains(times)
                else { throw HostSyntaxError("'\(part)' is not a count such as 4 or 4(x2)") }
                repeats = times
                count = part[..<open]
            }
            guard let value = Int(count), value > 0 else { throw HostSyntaxError("'\(part)' is not a count such as 4 or 4(x2)") }
            guard counts.count + repeats <= largestExpansion else { throw HostSyntaxError("the counts name more than \(largestExpansion) nodes") }
            counts += repeatElement(value, count: repeats)
        }
        return counts
    }

    /// The nodes of the allocation this process runs in, from Slurm's environment
    /// (`SLURM_JOB_NODELIST`, `SLURM_JOB_CPUS_PER_NODE`), each with its processors as slots.
    /// - Throws: ``HostSyntaxError`` if the variables are missing, unreadable or disagree.
    package static func allocation(environment: [String: String]) throws(HostSyntaxError) -> [Host] {
        guard let list = environment["SLURM_JOB_NODELIST"] ?? environment["SLURM_NODELIST"] else {
            throw HostSyntaxError("not inside a Slurm allocation: SLURM_JOB_NODELIST is not set (run under salloc or sbatch)")
        }
        let nodes = try expand(list)
        guard let countText = environment["SLURM_JOB_CPUS_PER_NODE"] else {
            return nodes.map { Host(.slurmNode($0)) }
        }
        let counts = try expandCounts(countText)
        guard counts.count == nodes.count else {
            throw HostSyntaxError("SLURM_JOB_CPUS_PER_NODE '\(countText)' gives \(counts.count) counts for \(nodes.count) nodes in '\(list)'")
        }
        return zip(nodes, counts).map { Host(.slurmNode($0), slots: $1) }
    }

    /// Splits at the commas outside brackets.
    private static func splitTopLevel(_ list: String) throws(HostSyntaxError) -> [Substring] {
        var parts: [Substring] = []
        var depth = 0
        var start = list.startIndex
        for index in list.indices {
            switch list[index] {
            case "[": depth += 1
            case "]": depth -= 1
            case "," where depth == 0:
                parts.append(list[start..<index])
                start = list.index(after: index)
            default: break
            }
            if depth < 0 || depth > 1 { throw HostSyntaxError("'\(list)': brackets do not pair") }
        }
        parts.append(list[start...])
        return parts
    }

    /// `01-04,07` → 01 02 03 04 07.
    private static func expandRanges(_ ranges: Substring, in entry: String) throws(HostSyntaxError) -> [String] {
        var values: [String] = []
        for range in ranges.split(separator: ",", omittingEmptySubsequences: false) {
            let bounds = range.split(separator: "-", omittingEmptySubsequences: false)
            guard (1...2).contains(bounds.count), bounds.allSatisfy({ !$0.isEmpty && $0.allSatisfy(\.isASCIIDigit) && $0.count <= 18 }),
                  let low = Int(bounds[0]), let high = Int(bounds[bounds.count - 1]), low <= high
            else { throw HostSyntaxError("'\(entry)': '\(range)' is not a number or a range low-high") }
            guard values.count + (high - low + 1) <= largestExpansion else { throw HostSyntaxError("'\(entry)' names more than \(largestExpansion) hosts") }
            let width = bounds[0].count
            for value in low...high {
                let digits = String(value)
                values.append(String(repeating: "0", count: max(0, width - digits.count)) + digits)
            }
        }
        return values
    }
}

extension Character {
    fileprivate var isASCIIDigit: Bool { isASCII && isNumber }
}

extension Host {
    /// The host as a pool takes it, with `defaultSlots` when the login named no count.
    package func workerHost(defaultSlots: Int) -> WorkerHost {
        let count = slots ?? defaultSlots
        switch reach {
        case .local:
            return .local(slots: count)
        case .ssh(let command, let user, let host, let port):
            let destination = user.map { "\($0)@\(host)" } ?? host
            return .ssh(destination, slots: count, command: command + (port.map { ["-p", $0] } ?? []))
        case .slurmNode(let node):
            return WorkerHost(.slurmNode(node), slots: count)
        }
    }
}
