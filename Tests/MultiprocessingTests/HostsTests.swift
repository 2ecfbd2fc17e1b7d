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

@Suite("SHA-256, which names a copied worker binary")
struct SHA256Tests {
    @Test("the FIPS 180-4 examples, and input fed in pieces of every size")
    func knownDigests() {
        func digest(_ bytes: [UInt8], pieces: Int = 1) -> String {
            var hash = SHA256()
            let step = max(1, bytes.count / pieces)
            var start = 0
            while start < bytes.count {
                hash.update(Array(bytes[start..<min(bytes.count, start + step)]))
                start += step
            }
            return hash.finalizeHex()
        }
        #expect(digest([]) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(digest(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        let twoBlocks = Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)
        for pieces in 1...twoBlocks.count {
            #expect(digest(twoBlocks, pieces: pieces) == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        }
        #expect(digest([UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000), pieces: 7) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }
}
