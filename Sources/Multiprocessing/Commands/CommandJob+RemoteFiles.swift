extension CommandJob {
    /// The files a command on another machine needs and makes: GNU parallel's `--transferfile`,
    /// `--return`, `--cleanup` and `--workdir`. On the coordinator's own machine they are
    /// ignored, as GNU parallel ignores them for `:`: the files are already where they belong.
    public struct RemoteFiles: Codable, Sendable, Hashable {
        /// Where on the host the command runs, and where relative paths point.
        public enum WorkingDirectory: Codable, Sendable, Hashable {
            /// The login's home directory, where the host's agent starts.
            case home
            /// This folder, relative to the home directory unless absolute; made if missing.
            case path([UInt8])
            /// A new folder of its own, removed with everything in it after the job
            /// (GNU parallel's `--workdir ...`).
            case temporary
        }

        /// Where the command runs.
        public var workingDirectory: WorkingDirectory
        /// Files written on the host before the command starts, at their paths relative to
        /// ``workingDirectory`` (or absolute).
        public var transfers: [File]
        /// Paths, relative to ``workingDirectory`` unless absolute, whose files come back in
        /// ``Output/returnedFiles`` after the command ends.
        public var returns: [[UInt8]]
        /// Whether the transferred and returned files are removed from the host afterwards.
        public var removesFiles: Bool

        /// Files for a command on another machine.
        public init(workingDirectory: WorkingDirectory = .home, transfers: [File] = [], returns: [[UInt8]] = [], removesFiles: Bool = false) {
            self.workingDirectory = workingDirectory
            self.transfers = transfers
            self.returns = returns
            self.removesFiles = removesFiles
        }
    }

    /// A file's path, contents and permission bits.
    public struct File: Codable, Sendable, Hashable {
        /// The path, as bytes.
        public var path: [UInt8]
        public var contents: [UInt8]
        /// The permission bits, such as 0o644.
        public var permissions: UInt32

        /// A file at `path` holding `contents`.
        public init(path: [UInt8], contents: [UInt8], permissions: UInt32 = 0o644) {
            self.path = path
            self.contents = contents
            self.permissions = permissions
        }
    }

    /// Whether this worker runs on another machine than its coordinator (its agent says so).
    static var runsOnAnotherMachine: Bool {
        WorkerProcess.environmentValue(AgentProtocol.remoteWorkerEnvironmentKey) != nil
    }

    /// Runs the command with `files` around it: the working directory made, the transfers
    /// written, the command run there, the returns read, and the cleaning done.
    func run(_ input: Input, with files: RemoteFiles, _ command: (Input) throws -> Output) throws -> Output {
        let directory: [UInt8]
        do {
            switch files.workingDirectory {
            case .home: directory = Array(".".utf8)
            case .path(let path):
                try FileStaging.makeDirectories(path)
                directory = path
            case .temporary:
                directory = try FileStaging.makeTemporaryDirectory(prefix: Array(".cache/swift-multiprocessing/work-".utf8))
            }
        } catch {
            throw Self.failure("cannot make the working directory on this host", error)
        }
        func place(_ path: [UInt8]) -> [UInt8] {
            path.first == UInt8(ascii: "/") ? path : directory + [UInt8(ascii: "/")] + path
        }
        var written: [[UInt8]] = []
        func clean() {
            if files.removesFiles { for path in written { FileStaging.removeFile(path) } }
            if files.workingDirectory == .temporary { FileStaging.removeTree(directory) }
        }
        do {
            for file in files.transfers {
                let path = place(file.path)
                try FileStaging.write(file.contents, to: path, permissions: file.permissions)
                written.append(path)
            }
        } catch {
            clean()
            throw Self.failure("cannot write a transferred file on this host", error)
        }
        var output: Output
        do {
            output = try FileStaging.withWorkingDirectory(directory) { try command(input) }
        } catch {
            clean()
            throw error
        }
        var returned: [File] = []
        var budget = max(0, input.outputLimit ?? Self.defaultOutputLimit) - output.standardOutput.count - output.standardError.count
        for path in files.returns {
            let placed = place(path)
            do {
                let (contents, permissions) = try FileStaging.read(placed, limit: budget)
                budget -= contents.count
                returned.append(File(path: path, contents: contents, permissions: permissions))
                written.append(placed)
            } catch {
                output.standardError += Array("pool: cannot return \(String(decoding: path, as: UTF8.self)): \(error.call) failed: \(error.errno)\n".utf8)
            }
        }
        output.returnedFiles = returned
        clean()
        return output
    }
}
