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

        /// Whether ``standardInput`` goes into a temporary file instead, whose path replaces
        /// ``CommandJob/inputFilePlaceholder`` in the arguments (`pool run --pipe --cat`); the
        /// command's stdin is then `/dev/null`, and the file is removed when it ends.
        public var passesInputAsFile: Bool?

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

        /// Whether it exited with status 0.
        public var succeeded: Bool { exitCode == 0 }
    }

    /// The output a command may write when its input sets no ``Input/outputLimit``: what fits
    /// in a frame of the default size, with room for the rest of the result.
    public static let defaultOutputLimit = WireProtocol.defaultMaximumFrameSize - (1 << 20)

    /// Stands for the worker's slot number in ``Input/arguments``. NUL cannot occur in a real
    /// argument, so no input can be mistaken for it.
    public static let slotPlaceholder = "\u{0}slot\u{0}"

    /// Stands for the path of the temporary file that holds ``Input/standardInput`` when
    /// ``Input/passesInputAsFile`` is set (GNU parallel's `{}` with `--cat`).
    public static let inputFilePlaceholder = "\u{0}input-file\u{0}"

    public init() {}

    public func run(_ input: Input) throws -> Output {
        guard input.passesInputAsFile == true else { return try run(input, inputFile: nil) }
        let file: TemporaryFile
        do {
            file = try TemporaryFile(holding: input.standardInput ?? [])
        } catch {
            var failure = ProcessPoolError(.spawnFailed, "cannot write the command's input to a temporary file (\(error.call) failed)")
            failure.errno = error.errno
            failure.resourceLimit = ThisProcess.resourceLimitNote(call: error.call, errno: error.errno)
            throw failure
        }
        defer { file.remove() }
        return try run(input, inputFile: file.path)
    }

    /// Runs the command; `inputFile` replaces ``inputFilePlaceholder``, and then the command's
    /// stdin is `/dev/null`.
    private func run(_ input: Input, inputFile: [UInt8]?) throws -> Output {
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
                arguments, standardInput: inputFile == nil ? input.standardInput : nil, stream: send.map { send in { send($0, $1) } },
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
        case arguments, argumentBytes, streamsOutput, outputLimit, standardInput, passesInputAsFile
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
        try container.encodeIfPresent(standardInput, forKey: .standardInput)
        try container.encodeIfPresent(passesInputAsFile, forKey: .passesInputAsFile)
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
        passesInputAsFile = try container.decodeIfPresent(Bool.self, forKey: .passesInputAsFile)
    }
}
