/// Runs a command in the worker and returns its exit status and output: the job behind
/// `pool run`, served by `pool-worker`.
///
/// The command is executed directly from its argument vector (no shell unless the arguments
/// say `/bin/sh -c …`). It runs in the worker's process group, so a timeout or cancellation
/// that stops the worker stops the command too.
public struct CommandJob: Job {
    public static let name = "command"

    /// What to run.
    public struct Input: Sendable {
        /// The program and its arguments, byte for byte: Linux file names and arguments need not
        /// be UTF-8, and each reaches the program exactly as given. Occurrences of
        /// ``slotPlaceholder`` are replaced by the worker's slot number (GNU parallel's `{%}`).
        /// An argument may not contain any other NUL byte (the kernel ends it there): the job
        /// fails instead.
        public var argumentBytes: [[UInt8]]

        /// ``argumentBytes`` as text. Setting it replaces them with the strings' UTF-8; reading
        /// it repairs any invalid UTF-8 with U+FFFD, so use ``argumentBytes`` for the exact bytes.
        public var arguments: [String] {
            get { argumentBytes.map { String(decoding: $0, as: UTF8.self) } }
            set { argumentBytes = newValue.map { Array($0.utf8) } }
        }

        /// Whether the worker sends the command's output to the coordinator whole lines at a
        /// time as it is written (`pool run --line-buffer`) instead of in the ``Output``.
        package var streamsOutput: Bool?

        /// Bytes for the command to read on its standard input (`pool run --pipe` gives each
        /// command a block of its input this way); nil: it reads `/dev/null`.
        public var standardInput: [UInt8]?

        /// A part of a regular file for the command to read after ``standardInput``
        /// (`pool run --pipepart`). The worker reads it itself, so its bytes never pass
        /// through the coordinator; the job fails if the file is shorter than the part.
        public var standardInputFile: FileRange?

        /// How the command gets ``standardInput`` and ``standardInputFile``; nil is
        /// ``InputPassing/standardInput``.
        public var inputPassing: InputPassing?

        /// Files to put on another machine before the command and to bring back after it, and
        /// where it runs there; ignored on the coordinator's machine.
        public var remoteFiles: RemoteFiles?

        /// The most bytes of output (standard output and standard error together) the command
        /// may write; one that writes more is killed and the job fails saying so. Nil:
        /// ``defaultOutputLimit``. It must stay below the pool's
        /// ``ProcessPoolConfiguration/maximumFrameSize``, which the output travels in.
        public var outputLimit: Int?

        /// Creates a command.
        /// - Parameter arguments: The program (found in `PATH` unless it contains a slash) and
        ///   its arguments.
        public init(arguments: [String]) { argumentBytes = arguments.map { Array($0.utf8) } }

        /// Creates a command from arguments given as bytes, which need not be UTF-8.
        /// - Parameter argumentBytes: The program (found in `PATH` unless it contains a slash)
        ///   and its arguments.
        public init(argumentBytes: [[UInt8]]) { self.argumentBytes = argumentBytes }

        package init(argumentBytes: [[UInt8]], streamsOutput: Bool) {
            self.argumentBytes = argumentBytes
            self.streamsOutput = streamsOutput
        }
    }

    /// A range of bytes of a file.
    public struct FileRange: Codable, Sendable, Hashable {
        /// The file's path, as bytes.
        public var path: [UInt8]
        /// Where the range starts.
        public var offset: Int
        /// How many bytes it holds.
        public var byteCount: Int

        /// Creates a range of `byteCount` bytes from `offset` of the file at `path`.
        public init(path: [UInt8], offset: Int, byteCount: Int) {
            self.path = path
            self.offset = offset
            self.byteCount = byteCount
        }
    }

    /// How a command gets its input bytes.
    public enum InputPassing: String, Codable, Sendable {
        /// On its standard input, through a pipe.
        case standardInput
        /// In a temporary file, made before the command starts and removed after it ends,
        /// whose path replaces ``CommandJob/inputFilePlaceholder`` in the arguments
        /// (`pool run --cat`); the command's stdin is `/dev/null`.
        case temporaryFile
        /// Through a named pipe whose path replaces ``CommandJob/inputFilePlaceholder``
        /// (`pool run --fifo`), written as the command reads it; the command's stdin is
        /// `/dev/null`. A command that never opens it just leaves the bytes unread.
        case namedPipe
    }

    /// How the command ended and what it printed.
    public struct Output: Codable, Sendable {
        /// The exit status, if it exited.
        public var exitCode: Int32?
        /// The signal that ended it, if one did.
        public var signal: Int32?
        /// Everything it wrote to standard output. (Bytes rather than `Data`: the library,
        /// and so every worker, does without Foundation.)
        public var standardOutput: [UInt8]
        /// Everything it wrote to standard error.
        public var standardError: [UInt8]
        /// When it started, in seconds since 1970.
        public var startTime: Double
        /// How long it ran, in seconds.
        public var runtime: Double
        /// The files ``Input/remoteFiles`` asked back, when it ran on another machine.
        public var returnedFiles: [File]?

        /// Whether it exited with status 0.
        public var succeeded: Bool { exitCode == 0 }
    }

    /// The output a command may write when its input sets no ``Input/outputLimit``: what fits
    /// in a frame of the default size, with room for the rest of the result.
    public static let defaultOutputLimit = WireProtocol.defaultMaximumFrameSize - (1 << 20)

    /// Stands for the worker's slot number in ``Input/arguments``. NUL cannot occur in a real
    /// argument, so no input can be mistaken for it.
    public static let slotPlaceholder = "\u{0}slot\u{0}"

    /// Stands for the path of the temporary file or named pipe that holds the input when
    /// ``Input/inputPassing`` says so (GNU parallel's `{}` with `--cat` or `--fifo`).
    public static let inputFilePlaceholder = "\u{0}input-file\u{0}"

    public init() {}

    public func run(_ input: Input) throws -> Output {
        if let files = input.remoteFiles, Self.runsOnAnotherMachine {
            return try run(input, with: files, runHere)
        }
        return try runHere(input)
    }

    private func runHere(_ input: Input) throws -> Output {
        var source: CommandRunner.InputSource?
        if input.standardInput != nil || input.standardInputFile != nil {
            source = CommandRunner.InputSource(bytes: input.standardInput ?? [])
            if let range = input.standardInputFile {
                let name = String(decoding: range.path, as: UTF8.self)
                let size: Int?
                do {
                    size = try source!.append(range)
                } catch {
                    throw Self.failure("cannot read \(name) for the command's input", error)
                }
                if let size, size < range.offset + range.byteCount {
                    throw ProcessPoolError(
                        .invalidConfiguration,
                        "\(name) is \(size) bytes, too short for the command's input (\(range.byteCount) bytes from offset \(range.offset)); did it change?")
                }
            }
        }
        switch input.inputPassing ?? .standardInput {
        case .standardInput:
            return try run(input, standardInput: source, inputFile: nil)
        case .temporaryFile:
            let file: TemporaryFile
            do {
                file = try TemporaryFile(holding: source ?? CommandRunner.InputSource(bytes: []))
            } catch {
                throw Self.failure("cannot write the command's input to a temporary file", error)
            }
            defer { file.remove() }
            return try run(input, standardInput: nil, inputFile: file.path)
        case .namedPipe:
            let pipe: TemporaryNamedPipe
            do {
                pipe = try TemporaryNamedPipe()
            } catch {
                throw Self.failure("cannot make a named pipe for the command's input", error)
            }
            defer { pipe.remove() }
            var fed = source ?? CommandRunner.InputSource(bytes: [])
            fed.namedPipe = pipe.path
            return try run(input, standardInput: fed, inputFile: pipe.path)
        }
    }

    /// A job error for a failed system call while preparing the command's input.
    static func failure(_ what: String, _ error: SystemCallError) -> ProcessPoolError {
        var failure = ProcessPoolError(.spawnFailed, "\(what) (\(error.call) failed: \(error.errno))")
        failure.errno = error.errno
        failure.resourceLimit = ThisProcess.resourceLimitNote(call: error.call, errno: error.errno)
        return failure
    }

    /// Runs the command; `inputFile` replaces ``inputFilePlaceholder``.
    private func run(_ input: Input, standardInput: CommandRunner.InputSource?, inputFile: [UInt8]?) throws -> Output {
        let slot = Array((WorkerProcess.environmentValue(WireProtocol.slotEnvironmentKey) ?? "1").utf8)
        let placeholder = Array(Self.slotPlaceholder.utf8)
        var arguments = input.argumentBytes.map { $0.replacing(placeholder, with: slot) }
        if let inputFile {
            let filePlaceholder = Array(Self.inputFilePlaceholder.utf8)
            arguments = arguments.map { $0.replacing(filePlaceholder, with: inputFile) }
        }
        if let position = arguments.firstIndex(where: { $0.contains(0) }) {
            throw ProcessPoolError(.invalidConfiguration, "argument \(position) of the command contains a NUL byte, which no argument can hold")
        }
        let start = ThisProcess.wallClockNanoseconds()
        let clock = ContinuousClock()
        let began = clock.now
        let outcome: CommandRunner.Outcome
        do {
            let send = input.streamsOutput == true ? StreamedOutput.send : nil
            outcome = try CommandRunner.run(
                arguments, standardInput: standardInput, stream: send.map { send in { send($0, $1) } },
                outputLimit: max(0, input.outputLimit ?? Self.defaultOutputLimit))
        } catch {
            var failure = ProcessPoolError(.spawnFailed, "cannot run \(String(decoding: arguments.first ?? [], as: UTF8.self)) (\(error.call) failed)")
            failure.errno = error.errno
            failure.resourceLimit = ThisProcess.resourceLimitNote(call: error.call, errno: error.errno)
            throw failure
        }
        if outcome.exceededOutputLimit {
            throw OutputLimitExceeded(limit: input.outputLimit ?? Self.defaultOutputLimit)
        }
        let elapsed = clock.now - began
        var output = Output(
            exitCode: nil, signal: nil, standardOutput: outcome.standardOutput, standardError: outcome.standardError,
            startTime: Double(start) / 1e9,
            runtime: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
        switch outcome.status {
        case .exited(let code): output.exitCode = code
        case .signaled(let signal): output.signal = signal
        }
        return output
    }
}

/// The error of a command that wrote more output than its limit: it was killed, and what it had
/// written was dropped rather than held in memory.
public struct OutputLimitExceeded: Error, CustomStringConvertible {
    /// The limit, in bytes.
    public var limit: Int

    public var description: String {
        "the command wrote more than \(limit) bytes of output (stdout and stderr together) and was killed; raise the limit with pool run --max-output SIZE (CommandJob.Input.outputLimit)"
    }
}

extension CommandJob.Input: Codable {
    private enum CodingKeys: String, CodingKey {
        case arguments, argumentBytes, streamsOutput, outputLimit, standardInput, standardInputFile, inputPassing, remoteFiles
    }

    /// Arguments that are all valid UTF-8 travel as strings (readable in JSON, the same bytes
    /// on the wire); any others as `argumentBytes`, arrays of bytes.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        let texts = argumentBytes.map { String(validating: $0, as: UTF8.self) }
        if texts.allSatisfy({ $0 != nil }) {
            try container.encode(texts.map { $0! }, forKey: .arguments)
        } else {
            try container.encode(argumentBytes, forKey: .argumentBytes)
        }
        try container.encodeIfPresent(streamsOutput, forKey: .streamsOutput)
        try container.encodeIfPresent(outputLimit, forKey: .outputLimit)
        try container.encodeIfPresent(standardInputFile, forKey: .standardInputFile)
        try container.encodeIfPresent(inputPassing, forKey: .inputPassing)
        try container.encodeIfPresent(remoteFiles, forKey: .remoteFiles)
        // Last, so that its bytes end the payload (see `binaryPrefix(standardInputCount:)`).
        try container.encodeIfPresent(standardInput, forKey: .standardInput)
    }

    /// The binary encoding of this input with ``standardInput`` set to `count` bytes, up to
    /// those bytes, which end it: so a caller can read the bytes into place after room for
    /// this prefix and send the whole as the payload, never copying them (`pool run --pipe`).
    /// ``standardInput`` itself is ignored.
    package func binaryPrefix(standardInputCount count: Int) throws -> [UInt8] {
        var empty = self
        empty.standardInput = []
        var prefix = try BinaryPayloadEncoder().encode(empty)
        // An empty array in a keyed entry is its length 1 and its count 0; the real ones follow
        // the same rule with the count known (the codec writes them before the bytes).
        guard prefix.suffix(2).elementsEqual([1, 0]) else { throw EncodingError.invalidValue(count, .init(codingPath: [], debugDescription: "unexpected encoding of an empty standard input")) }
        prefix.removeLast(2)
        Varint.append(UInt64(Varint.encodedLength(of: UInt64(count)) + count), to: &prefix)
        Varint.append(UInt64(count), to: &prefix)
        return prefix
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        if let bytes = try container.decodeIfPresent([[UInt8]].self, forKey: .argumentBytes) {
            argumentBytes = bytes
        } else {
            argumentBytes = try container.decode([String].self, forKey: .arguments).map { Array($0.utf8) }
        }
        streamsOutput = try container.decodeIfPresent(Bool.self, forKey: .streamsOutput)
        outputLimit = try container.decodeIfPresent(Int.self, forKey: .outputLimit)
        standardInput = try container.decodeIfPresent([UInt8].self, forKey: .standardInput)
        standardInputFile = try container.decodeIfPresent(CommandJob.FileRange.self, forKey: .standardInputFile)
        inputPassing = try container.decodeIfPresent(CommandJob.InputPassing.self, forKey: .inputPassing)
        remoteFiles = try container.decodeIfPresent(CommandJob.RemoteFiles.self, forKey: .remoteFiles)
    }
}
