/// Constants of the coordinator–worker protocol. The byte-level description is the DocC
/// article "The Wire Protocol".
enum WireProtocol {
    /// The first four bytes each side sends: `SWMP`.
    static let magic: [UInt8] = [0x53, 0x57, 0x4D, 0x50]
    /// Bumped on any incompatible change; both sides must agree exactly. Version 2 added the
    /// agent mode and its envelopes (``AgentProtocol``).
    static let version: UInt16 = 2
    /// Magic, version (UInt16 LE), reserved flags (UInt16 LE, zero).
    static let preambleSize = 8
    /// A frame's header: its length (UInt32 LE, counting the type byte and body) and type byte.
    static let frameHeaderSize = 5
    /// Large enough for any sensible job, small enough that a corrupt length cannot make a
    /// reader allocate gigabytes.
    static let defaultMaximumFrameSize = 256 << 20
    /// Bytes of a frame that are not a job's payload, at most: frame and batch headers, and the
    /// job's own index, codec and length fields. A payload may use the rest of the frame.
    static let frameOverhead = 64

    /// The largest payload a frame of `maximumFrameSize` bytes can carry.
    static func maximumPayloadSize(inFramesOf maximumFrameSize: Int) -> Int {
        maximumFrameSize - frameOverhead
    }

    /// A frame length can never exceed what its UInt32 field holds.
    static let absoluteMaximumFrameSize = Int(UInt32.max)

    /// The environment variable that marks a process as spawned by a pool; its value is the
    /// protocol version.
    static let workerEnvironmentKey = "SWIFT_MULTIPROCESSING_WORKER"
    /// The coordinator's pid, so a worker can detect that its parent died while it started.
    static let parentEnvironmentKey = "SWIFT_MULTIPROCESSING_PARENT"
    /// The worker's slot number (1…workerCount; a replacement takes the slot of the worker it
    /// replaces), for GNU parallel's `{%}`.
    static let slotEnvironmentKey = "SWIFT_MULTIPROCESSING_SLOT"
    /// The address-space cap in bytes a worker sets on itself at start-up, if any.
    static let memoryLimitEnvironmentKey = "SWIFT_MULTIPROCESSING_MEMORY_LIMIT"

    static var preamble: [UInt8] {
        magic + [UInt8(truncatingIfNeeded: version), UInt8(truncatingIfNeeded: version >> 8), 0, 0]
    }
}

/// The type byte of a frame.
enum FrameType: UInt8, CaseIterable, Sendable {
    /// Worker → coordinator, first frame: pid and the names of the jobs served.
    case workerHello = 0x01
    /// Coordinator → worker, first frame: limits the worker must respect.
    case coordinatorHello = 0x02
    /// Coordinator → worker: a batch of jobs.
    case jobs = 0x10
    /// Worker → coordinator: results for consecutive jobs of one batch.
    case results = 0x11
    /// Worker → coordinator, optional: output a running job streams before its result (sent
    /// only for jobs that ask for it, such as a command run with `pool run --line-buffer`).
    case output = 0x12
    /// Coordinator → worker: finish the current batch and exit.
    case shutdown = 0x20
    /// Worker → coordinator: the worker cannot go on; a message says why.
    case fatal = 0x7F
}

/// What became of one job, as the worker reports it.
enum ResultStatus: UInt8 {
    /// Payload: codec byte, then a length-prefixed output.
    case succeeded = 0
    /// Payload: the error's type name, then its description (two strings).
    case threw = 1
    /// The worker could not decode the input. Payload: a description.
    case inputDecodingFailed = 2
    /// The worker could not encode the output. Payload: a description.
    case outputEncodingFailed = 3
    /// The job index is not one the worker announced. Payload: the index.
    case unknownJob = 4
}
