/// How the coordinator reaches one worker: bytes in, bytes out, an exit or loss event, and a
/// way to stop it.
///
/// The event loop, dispatch, rescue and supervision speak to a worker only through this, so a
/// worker behind something other than a local pipe (a connection carried by `ssh`, a Slurm
/// job step) is one more conforming type. ``LocalPipeConnection`` is the local kind: a child
/// process spawned here, its stdin, stdout and stderr as pipes, its exit as a pidfd.
///
/// Used on the event loop's thread only. Reads and writes never block: they transfer what they
/// can and say ``FileDescriptor/IOResult/wouldBlock`` otherwise.
protocol WorkerConnection: AnyObject {
    /// The worker's process id, as errors and ``ProcessPool/workerProcessIDs`` report it.
    var processID: Int32 { get }

    /// The executable the worker runs, for errors.
    var executablePath: String { get }

    /// Whether the stream of protocol bytes has ended (a read returned its end, or failed).
    var outputEnded: Bool { get }

    /// Whether the worker's diagnostics have ended.
    var diagnosticsEnded: Bool { get }

    /// Adds what the loop must wait for to `pollSet`: protocol bytes and diagnostics to read
    /// (until each has ended), room to write if `wantsToWrite`, and the worker's exit.
    func register(in pollSet: inout PollSet, wantsToWrite: Bool) -> ConnectionSlots

    /// Reads protocol bytes from the worker; `.transferred(0)` at the end of the stream.
    func read(into buffer: UnsafeMutableRawBufferPointer) throws(SystemCallError) -> FileDescriptor.IOResult

    /// Reads the worker's diagnostics (its stderr); `.transferred(0)` at their end.
    func readDiagnostics(into buffer: UnsafeMutableRawBufferPointer) throws(SystemCallError) -> FileDescriptor.IOResult

    /// Writes protocol bytes to the worker, as many as it takes now.
    func write(_ buffer: UnsafeRawBufferPointer) throws(SystemCallError) -> FileDescriptor.IOResult

    /// Writes protocol bytes to the worker, the buffers in order, as much as it takes now.
    func write(gathering buffers: [UnsafeRawBufferPointer]) throws(SystemCallError) -> FileDescriptor.IOResult

    /// Ends the stream to the worker: it finishes what it has and exits. Idempotent.
    func closeInput()

    /// Sends `signal` to the worker and everything it started.
    func signal(_ signal: CInt)

    /// Once the worker has exited (its exit event came, or both its streams ended), collects
    /// how it ended, stops whatever it left running, and releases every resource. Called once.
    func finish() -> TerminationStatus

    /// The machine the worker runs on, for errors; nil for this machine.
    var hostName: String? { get }

    /// Why the worker's host was lost, when the worker ended with it (its connection ended or
    /// stopped answering) rather than on its own.
    var hostLoss: String? { get }

    /// What is ready without a descriptor to poll (a remote worker's bytes that its host's
    /// link received): the loop handles these as if `poll` had reported them.
    var bufferedEvents: BufferedEvents { get }
}

extension WorkerConnection {
    var hostName: String? { nil }
    var hostLoss: String? { nil }
    var bufferedEvents: BufferedEvents { [] }
}

/// Events of a connection that has no descriptor of its own (``WorkerConnection/bufferedEvents``).
struct BufferedEvents: OptionSet {
    let rawValue: UInt8
    /// Protocol bytes, or their end, are there to read.
    static let output = BufferedEvents(rawValue: 1 << 0)
    /// Diagnostics, or their end, are there to read.
    static let diagnostics = BufferedEvents(rawValue: 1 << 1)
    /// A write would take bytes now (or fail, the worker being gone).
    static let writable = BufferedEvents(rawValue: 1 << 2)
}

/// Where a connection's descriptors sit in the loop's poll set, for reading its events.
struct ConnectionSlots {
    var output: Int?
    var diagnostics: Int?
    var input: Int?
    /// Nil where the connection has no exit event of its own: then the end of both of its
    /// streams stands for the exit.
    var exit: Int?
}
