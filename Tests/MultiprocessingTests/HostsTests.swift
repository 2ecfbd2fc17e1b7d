import Testing

@testable import Multiprocessing

/// The ways users name the machines to run on: GNU parallel's `--sshlogin` and Slurm's host lists.
@Suite("Host lists")
struct HostsTests {
    @Test("--sshlogin: slots, this machine, user, port, ssh command, escaped commas, merging")
    func logins() throws {
        let hosts = try Host.parseLogins("2/alice@node1,:,node2:2222,4/ssh -F my_config node3,[2001:db8::1]:22,fe80::1")
        #expect(hosts == [
            Host(.ssh(command: ["ssh"], user: "alice", host: "node1", port: nil), slots: 2),
            Host(.local),
            Host(.ssh(command: ["ssh"], user: nil, host: "node2", port: "2222")),
            Host(.ssh(command: ["ssh", "-F", "my_config"], user: nil, host: "node3", port: nil), slots: 4),
            Host(.ssh(command: ["ssh"], user: nil, host: "2001:db8::1", port: "22")),
            Host(.ssh(command: ["ssh"], user: nil, host: "fe80::1", port: nil)),
        ])
        #expect(try Host.parseLogins("node1,3/node1,8/:") == [
            Host(.ssh(command: ["ssh"], user: nil, host: "node1", port: nil), slots: 3), Host(.local, slots: 8),
        ])
        #expect(try Host.parseLogins("my\\,ssh -x h", sshCommand: ["ssh"]) == [Host(.ssh(command: ["my,ssh", "-x"], user: nil, host: "h", port: nil))])
        #expect(try Host.parseLogins("h", sshCommand: ["ssh", "-p", "2"]) == [Host(.ssh(command: ["ssh", "-p", "2"], user: nil, host: "h", port: nil))])
    }

    @Test("--sshlogin: what cannot be a login is an error naming it")
    func badLogins() {
        for (bad, says) in [
            ("0/h", "from 1"), ("u:secret@h", "passwords"), ("-oProxyCommand=x@h", "cannot start with '-'"),
            ("-oProxyCommand=x", "not a host"), ("h:", "not a port"), ("@h", "no user"), ("h;rm", "not a host"),
        ] {
            #expect { try Host.parseLogins(bad) } throws: { error in
                "\(error)".contains("'\(bad)'") && "\(error)".contains(says)
            }
        }
    }

    @Test("--sshloginfile: one login list per line, comments and blank lines skipped")
    func loginFile() throws {
        let hosts = try Host.parseLoginFile("# hosts\n\n2/a\n  # indented comment\n  b, c\n:\n")
        #expect(hosts.map(\.reach) == [
            .ssh(command: ["ssh"], user: nil, host: "a", port: nil), .ssh(command: ["ssh"], user: nil, host: "b", port: nil),
            .ssh(command: ["ssh"], user: nil, host: "c", port: nil), .local,
        ])
        #expect(hosts.first?.slots == 2)
    }

    @Test("Slurm host lists: ranges, zero padding, several brackets, plain names")
    func slurmHostLists() throws {
        #expect(try SlurmHostList.expand("node[01-04,07],gpu3") == ["node01", "node02", "node03", "node04", "node07", "gpu3"])
        #expect(try SlurmHostList.expand("r[1-2]-n[8-10]") == ["r1-n8", "r1-n9", "r1-n10", "r2-n8", "r2-n9", "r2-n10"])
        #expect(try SlurmHostList.expand("tux[9-11]x") == ["tux9x", "tux10x", "tux11x"])
        #expect(try SlurmHostList.expand("a,b") == ["a", "b"])
        for bad in ["n[1-", "n[3-1]", "n[a]", "n]1[", "n[1-2-3]", "n[0-99999999]"] {
            #expect(throws: HostSyntaxError.self, "\(bad)") { try SlurmHostList.expand(bad) }
        }
        #expect(try SlurmHostList.expandCounts("72(x2),36") == [72, 72, 36])
        for bad in ["0", "4(x0)", "4(2)", "x"] {
            #expect(throws: HostSyntaxError.self, "\(bad)") { try SlurmHostList.expandCounts(bad) }
        }
    }

    @Test("the current Slurm allocation: its nodes with their processors as slots")
    func slurmAllocation() throws {
        let hosts = try SlurmHostList.allocation(environment: ["SLURM_JOB_NODELIST": "c[1-3]", "SLURM_JOB_CPUS_PER_NODE": "4(x2),2"])
        #expect(hosts == [Host(.slurmNode("c1"), slots: 4), Host(.slurmNode("c2"), slots: 4), Host(.slurmNode("c3"), slots: 2)])
        #expect(throws: HostSyntaxError.self) { try SlurmHostList.allocation(environment: [:]) }
        #expect(throws: HostSyntaxError.self) {
            try SlurmHostList.allocation(environment: ["SLURM_JOB_NODELIST": "c[1-3]", "SLURM_JOB_CPUS_PER_NODE": "4"])
        }
    }
}
