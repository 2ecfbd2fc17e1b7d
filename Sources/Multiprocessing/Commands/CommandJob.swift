/// Runs a command in the worker and returns its exit status and output: the job behind
/// `pool run`, served by `pool-worker`.
///
/// The command is executed directly from its argument vector (no shell unless the arguments
/// say `/bin/sh -c …`). It runs in the worker's process group, so a timeout or cancellation
/// that stops the worker stops the command too.
public struct CommandJob: Job {
    public static let name = "command"

    /// What to run.
    public struct Input: Codable, Sendable {
        /// The program and its arguments. Occurrences of ``slotPlaceholder`` are replaced by
        /// the worker's slot number (GNU parallel's `{%}`).
        public var arguments: [String]

        /// Whether the worker sends the command's output to the coordinator whole lines at a
        /// time as it is written (`pool run --line-buffer`) instead of in the ``Output``.
        package var streamsOutput: Bool?

        /// The most bytes of output (standard output and standard error together) the command
        /// may write; one that writes more is killed and the job fails saying so. Nil:
        /// ``defaultOutputLimit``. It must stay below the pool's
        /// ``ProcessPoolConfiguration/maximumFrameSize``, which the output travels in.
        public var outputLimit: Int?

        /// Creates a command.
        /// - Parameter arguments: The program (found in `PATH` unless it contains a slash) and
        ///   its arguments.
        public init(arguments: [String]) { self.arguments = arguments }

        package init(arguments: [String], streamsOutput: Bool) {
            self.arguments = arguments
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

    public init() {}

    public func run(_ input: Input) throws -> Output {
        let slot = WorkerProcess.environmentValue(WireProtocol.slotEnvironmentKey) ?? "1"
        let arguments = input.arguments.map { $0.replacing(Self.slotPlaceholder, with: slot) }
        let start = ThisProcess.wallClockNanoseconds()
        let clock = ContinuousClock()
        let began = clock.now
        let outcome: CommandRunner.Outcome
        do {
            let send = input.streamsOutput == true ? StreamedOutput.send : nil
            outcome = try CommandRunner.run(
                arguments, stream: send.map { send in { send($0, $1) } }, outputLimit: max(0, input.outputLimit ?? Self.defaultOutputLimit))
        } catch {
            throw ProcessPoolError(.spawnFailed, "cannot run \(arguments.first ?? "") (\(error.call) failed: \(error.errno))")
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
