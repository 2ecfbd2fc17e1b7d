/// A worker on another machine, as the event loop sees it: a channel on its host's one
/// connection (``HostLink``), which the loop itself reads and writes.
///
/// Nothing stands between the loop and the transport: what the loop writes becomes envelopes
/// on the transport's stream at once, and what the agent sends for this worker is kept here
/// until the loop reads it (``bufferedEvents`` tells the loop, in place of `poll`). After the
/// worker's last bytes and its exit status (or after its host was lost), both streams end, so
/// their end stands for its exit, as for a local worker without a pidfd.
final class RelayedConnection: WorkerConnection {
    let executablePath: String
    let link: HostLink
    let number: UInt32
    private(set) var processID: Int32 = 0
    /// How the worker ended, once the agent said so.
    private(set) var status: TerminationStatus?
    private(set) var hostLoss: String?
    private var output = ReceivedBytes()
    private var diagnostics = ReceivedBytes()
    /// The worker exited, or was lost with its host: the streams end once read to the end.
    private var ended = false
    private(set) var outputEnded = false
    private(set) var diagnosticsEnded = false
    private var inputClosed = false

    var hostName: String? { link.name }

    /// Asks `link` to start a worker with `environment` on its host.
    init(link: HostLink, channel: UInt32, executablePath: String, environment: [String]) {
        self.link = link
        self.executablePath = executablePath
        number = channel
        link.open(self, environment: environment)
    }

    // MARK: The loop's side

    func register(in pollSet: inout PollSet, wantsToWrite: Bool) -> ConnectionSlots {
        // No descriptor of its own: the link polls the transport, and ``bufferedEvents`` says
        // what it delivered.
        ConnectionSlots()
    }

    var bufferedEvents: BufferedEvents {
        var events: BufferedEvents = []
        if !outputEnded && (!output.isEmpty || ended) { events.insert(.output) }
        if !diagnosticsEnded && (!diagnostics.isEmpty || ended) { events.insert(.diagnostics) }
        if !inputClosed && (ended || link.inputRoom > 0) { events.insert(.writable) }
        return events
    }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws(SystemCallError) -> FileDescriptor.IOResult {
        if !output.isEmpty { return .transferred(output.take(into: buffer)) }
        guard ended else { return .wouldBlock }
        outputEnded = true
        return .transferred(0)
    }

    func readDiagnostics(into buffer: UnsafeMutableRawBufferPointer) throws(SystemCallError) -> FileDescriptor.IOResult {
        if !diagnostics.isEmpty { return .transferred(diagnostics.take(into: buffer)) }
        guard ended else { return .wouldBlock }
        diagnosticsEnded = true
        return .transferred(0)
    }

    func write(_ buffer: UnsafeRawBufferPointer) throws(SystemCallError) -> FileDescriptor.IOResult {
        try write(gathering: [buffer])
    }

    func write(gathering buffers: [UnsafeRawBufferPointer]) throws(SystemCallError) -> FileDescriptor.IOResult {
        guard !inputClosed && !ended else { throw SystemCallError(call: "write", errno: .brokenPipe) }
        // Like a pipe, it takes what there is room for: a frame of hundreds of megabytes goes
        // out a few megabytes at a time, between the heartbeats and the other workers' bytes.
        var room = link.inputRoom
        guard room > 0 else { return .wouldBlock }
        var total = 0
        for buffer in buffers where !buffer.isEmpty && room > 0 {
            let part = UnsafeRawBufferPointer(rebasing: buffer.prefix(room))
            link.sendInput(of: number, part)
            total += part.count
            room -= part.count
        }
        return .transferred(total)
    }

    func closeInput() {
        guard !inputClosed else { return }
        inputClosed = true
        if !ended { link.closeInput(of: number) }
    }

    func signal(_ signal: CInt) {
        if !ended { link.signal(number, signal) }
    }

    func finish() -> TerminationStatus {
        closeInput()
        link.forget(number)
        output = ReceivedBytes()
        diagnostics = ReceivedBytes()
        // A worker whose host was lost has no status; it was lost with its host, and the
        // loop treats it as such (``hostLoss``). SIGKILL stands for it in reports.
        return status ?? .signaled(Signal.kill)
    }

    // MARK: The link's side

    func started(processID: Int32) { self.processID = processID }

    func received(_ bytes: UnsafeRawBufferPointer, diagnostics isDiagnostics: Bool) {
        // A stream the loop has read to its end takes nothing more.
        if isDiagnostics {
            if !diagnosticsEnded { diagnostics.append(bytes) }
        } else if !outputEnded {
            output.append(bytes)
        }
    }

    /// The worker exited; what it wrote before has all been received.
    func exited(_ status: TerminationStatus) {
        self.status = status
        ended = true
    }

    /// The host was lost: a worker that had not exited ended with it. (One that had exited
    /// lost nothing: its last bytes came before its exit, and are all here.)
    func lost(because reason: String) {
        if status == nil { hostLoss = reason }
        ended = true
    }
}

/// Bytes received for the loop to read, in order.
struct ReceivedBytes {
    private var bytes: [UInt8] = []
    private var readIndex = 0

    var isEmpty: Bool { readIndex == bytes.count }

    mutating func append(_ more: UnsafeRawBufferPointer) {
        if isEmpty {
            bytes.removeAll(keepingCapacity: bytes.capacity <= 4 << 20)
            readIndex = 0
        } else if readIndex > bytes.count / 2 {
            // Read more than half: what is left moves to the front, so a stream that never
            // quite drains does not grow with all it ever carried.
            bytes.removeFirst(readIndex)
            readIndex = 0
        }
        bytes.append(contentsOf: more)
    }

    /// Moves as many bytes as fit into `buffer`; returns how many.
    mutating func take(into buffer: UnsafeMutableRawBufferPointer) -> Int {
        let count = min(buffer.count, bytes.count - readIndex)
        bytes.withUnsafeBytes { bytes in
            buffer.baseAddress!.copyMemory(from: bytes.baseAddress! + readIndex, byteCount: count)
        }
        readIndex += count
        return count
    }
}
