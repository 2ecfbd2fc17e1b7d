/// The agent protocol: how a coordinator and an agent (the worker binary started once on a
/// remote host) carry the streams of that host's workers over one connection. The byte-level
/// description is the DocC article "The Wire Protocol", section "Workers on other machines".
///
/// Each side starts with an 8-byte preamble (`SWMA`, the version, zero flags); then both send
/// envelopes: a payload length (UInt32 LE), a kind byte, a channel number (UInt32 LE) and the
/// payload. A channel is one worker; channel 0 is the connection itself.
enum AgentProtocol {
    /// The first four bytes each side sends: `SWMA`.
    static let magic: [UInt8] = [0x53, 0x57, 0x4D, 0x41]
    /// The agent protocol shares its version with the worker protocol: an agent serves workers
    /// of exactly its own version.
    static var version: UInt16 { WireProtocol.version }
    static let preambleSize = 8
    /// Payload length, kind, channel.
    static let headerSize = 9
    /// The largest payload an envelope may carry. Worker bytes travel in pieces of at most
    /// ``dataPieceSize``, so heartbeats and other workers' bytes are never stuck behind one
    /// worker's large frame for long.
    static let maximumPayloadSize = 1 << 20
    static let dataPieceSize = 256 * 1024
    /// The environment variable that starts a worker binary as an agent; its value is the
    /// protocol version the coordinator speaks.
    static let agentEnvironmentKey = "SWIFT_MULTIPROCESSING_AGENT"
    /// Set (to `ADDRESS PORT`) for an agent that calls the coordinator back over TCP instead of
    /// speaking on its stdout: it first reads a secret line from its stdin and sends it back as
    /// the first bytes of that connection.
    static let callbackEnvironmentKey = "SWIFT_MULTIPROCESSING_AGENT_CALLBACK"
    /// Set by an agent in the environment of the workers it starts: they run on another
    /// machine than their coordinator (``CommandJob/RemoteFiles`` apply there).
    static let remoteWorkerEnvironmentKey = "SWIFT_MULTIPROCESSING_REMOTE"

    static var preamble: [UInt8] {
        magic + [UInt8(truncatingIfNeeded: version), UInt8(truncatingIfNeeded: version >> 8), 0, 0]
    }
}

/// The kind byte of an envelope. Coordinator → agent kinds are below 0x80, agent → coordinator
/// kinds at or above it.
enum EnvelopeKind: UInt8, CaseIterable, Sendable {
    /// Coordinator → agent, channel 0, first: the heartbeat timeout (varint, milliseconds).
    case hello = 0x01
    /// Coordinator → agent: start a worker on this channel. Payload: a count (varint), then
    /// that many `KEY=VALUE` environment entries (varint length and bytes each).
    case open = 0x02
    /// Coordinator → agent: bytes for the worker's stdin.
    case input = 0x03
    /// Coordinator → agent: close the worker's stdin.
    case closeInput = 0x04
    /// Coordinator → agent: send a signal (varint) to the worker's process group.
    case signal = 0x05
    /// Coordinator → agent, channel 0: a heartbeat; the agent answers with ``pong`` and the
    /// same payload (8 bytes).
    case ping = 0x06

    /// Agent → coordinator, channel 0, first: the agent's pid (varint) and host name (string).
    case agentHello = 0x81
    /// Agent → coordinator: the worker started; its pid (varint).
    case opened = 0x82
    /// Agent → coordinator: the worker could not be started: the call that failed (string)
    /// and its errno (varint).
    case openFailed = 0x83
    /// Agent → coordinator: bytes from the worker's stdout.
    case output = 0x84
    /// Agent → coordinator: bytes from the worker's stderr.
    case diagnostics = 0x85
    /// Agent → coordinator: the worker exited, after the last of its output and diagnostics:
    /// 0 and the exit status, or 1 and the signal (a byte, then a varint).
    case exited = 0x86
    /// Answer to ``ping``, with its payload.
    case pong = 0x87
}

/// Appends envelopes to a byte buffer.
struct EnvelopeWriter {
    var bytes: [UInt8] = []

    mutating func writePreamble() {
        bytes.append(contentsOf: AgentProtocol.preamble)
    }

    /// Appends one envelope whose payload `fill` writes.
    mutating func write(_ kind: EnvelopeKind, channel: UInt32, _ fill: (inout WireWriter) -> Void = { _ in }) {
        var payload = WireWriter()
        fill(&payload)
        write(kind, channel: channel, payload: payload.bytes)
    }

    /// Appends one envelope carrying `payload` as it is.
    mutating func write(_ kind: EnvelopeKind, channel: UInt32, payload: some Collection<UInt8>) {
        bytes.append(contentsOf: Self.header(kind, channel: channel, payloadSize: payload.count))
        bytes.append(contentsOf: payload)
    }

    /// The header of an envelope whose payload is `payloadSize` bytes.
    static func header(_ kind: EnvelopeKind, channel: UInt32, payloadSize: Int) -> [UInt8] {
        precondition(payloadSize <= AgentProtocol.maximumPayloadSize, "envelope payload over the maximum")
        let length = UInt32(payloadSize)
        var header: [UInt8] = []
        header.reserveCapacity(AgentProtocol.headerSize)
        for shift in stride(from: 0, to: 32, by: 8) { header.append(UInt8(truncatingIfNeeded: length >> shift)) }
        header.append(kind.rawValue)
        for shift in stride(from: 0, to: 32, by: 8) { header.append(UInt8(truncatingIfNeeded: channel >> shift)) }
        return header
    }

    /// Cuts `data` into envelopes of `kind`, in pieces of at most
    /// ``AgentProtocol/dataPieceSize``, and hands each header and piece to `send` (which writes
    /// them with one gathering write, e.g. ``PendingBytes/send(_:to:)-(_,FileDescriptor)``), so
    /// that the data is never copied into an envelope buffer.
    ///
    /// - Returns: False as soon as `send` does (the stream is broken).
    static func sendPieces(
        _ kind: EnvelopeKind, channel: UInt32, _ data: UnsafeRawBufferPointer,
        _ send: ([UnsafeRawBufferPointer]) -> Bool
    ) -> Bool {
        var start = 0
        while start < data.count {
            let end = min(data.count, start + AgentProtocol.dataPieceSize)
            let header = Self.header(kind, channel: channel, payloadSize: end - start)
            let sent = header.withUnsafeBytes { header in send([header, UnsafeRawBufferPointer(rebasing: data[start..<end])]) }
            guard sent else { return false }
            start = end
        }
        return true
    }

    /// Appends `data` as envelopes of `kind`, in pieces of at most ``AgentProtocol/dataPieceSize``.
    mutating func writePieces(_ kind: EnvelopeKind, channel: UInt32, _ data: UnsafeRawBufferPointer) {
        var start = 0
        while start < data.count {
            let end = min(data.count, start + AgentProtocol.dataPieceSize)
            write(kind, channel: channel, payload: UnsafeRawBufferPointer(rebasing: data[start..<end]))
            start = end
        }
    }
}

/// Reassembles envelopes from a byte stream that arrives in arbitrary pieces, checking the
/// preamble and every header before trusting it.
struct EnvelopeReader {
    /// Bytes at `readIndex..<endIndex` have arrived and are not handled yet; the rest is room.
    private var storage: [UInt8] = []
    private var readIndex = 0
    private var endIndex = 0
    private var preambleChecked = false
    /// Which side's kinds may arrive: an agent reads coordinator kinds and the other way round.
    let acceptsAgentKinds: Bool

    init(acceptsAgentKinds: Bool) {
        self.acceptsAgentKinds = acceptsAgentKinds
    }

    var bufferedByteCount: Int { endIndex - readIndex }

    /// Appends bytes that arrived.
    mutating func append(_ bytes: UnsafeRawBufferPointer) {
        _ = fill(upTo: bytes.count) { room in
            room.copyMemory(from: bytes)
            return bytes.count
        }
    }

    /// Lets `read` put up to `count` bytes straight into the buffer (no copy on the way) and
    /// returns what it returns: the number of bytes it put there, or 0 for none.
    mutating func fill(upTo count: Int, _ read: (UnsafeMutableRawBufferPointer) -> Int) -> Int {
        if readIndex == endIndex {
            readIndex = 0
            endIndex = 0
        }
        if storage.count - endIndex < count {
            // Only the part of an envelope still waiting moves; the room grows when it must.
            if readIndex > 0 {
                storage.withUnsafeMutableBytes { bytes in
                    bytes.baseAddress!.copyMemory(from: bytes.baseAddress! + readIndex, byteCount: endIndex - readIndex)
                }
                endIndex -= readIndex
                readIndex = 0
            }
            if storage.count - endIndex < count {
                storage.append(contentsOf: repeatElement(0, count: endIndex + count - storage.count))
            }
        }
        let filled = storage.withUnsafeMutableBytes { [endIndex] bytes in
            read(UnsafeMutableRawBufferPointer(rebasing: bytes[endIndex..<endIndex + count]))
        }
        endIndex += max(0, min(filled, count))
        return filled
    }

    /// Hands the next complete envelope to `body`, or returns nil if more bytes are needed.
    ///
    /// The payload buffer is valid only during the call.
    /// - Throws: ``WireError`` for a bad preamble, a version mismatch, an unknown or
    ///   wrong-way kind, or a payload over ``AgentProtocol/maximumPayloadSize``; rethrows what
    ///   `body` throws.
    mutating func next<Result>(
        _ body: (_ kind: EnvelopeKind, _ channel: UInt32, _ payload: UnsafeRawBufferPointer) throws -> Result
    ) throws -> Result? {
        if !preambleChecked {
            try checkPreamble()
            guard bufferedByteCount >= AgentProtocol.preambleSize else { return nil }
            readIndex += AgentProtocol.preambleSize
            preambleChecked = true
        }
        guard bufferedByteCount >= AgentProtocol.headerSize else { return nil }
        let header = readIndex
        let length = Int(littleEndian32(at: header))
        guard length <= AgentProtocol.maximumPayloadSize else {
            throw WireError("an envelope says its payload is \(length) bytes, over the limit of \(AgentProtocol.maximumPayloadSize)")
        }
        let kindByte = storage[header + 4]
        guard let kind = EnvelopeKind(rawValue: kindByte), (kindByte >= 0x80) == acceptsAgentKinds else {
            throw WireError("unknown envelope kind 0x\(String(kindByte, radix: 16))")
        }
        guard bufferedByteCount >= AgentProtocol.headerSize + length else { return nil }
        let channel = littleEndian32(at: header + 5)
        let start = header + AgentProtocol.headerSize
        readIndex = start + length
        return try storage.withUnsafeBytes { bytes in
            try body(kind, channel, UnsafeRawBufferPointer(rebasing: bytes[start..<start + length]))
        }
    }

    private func littleEndian32(at index: Int) -> UInt32 {
        UInt32(storage[index]) | UInt32(storage[index + 1]) << 8 | UInt32(storage[index + 2]) << 16 | UInt32(storage[index + 3]) << 24
    }

    /// Checks as much of the preamble as has arrived, so a stream that is not an agent's (a
    /// shell's greeting, an old worker speaking its own protocol) is named at its first bytes.
    private func checkPreamble() throws(WireError) {
        let available = min(bufferedByteCount, AgentProtocol.preambleSize)
        let received = Array(storage[readIndex..<readIndex + available])
        let magicCount = min(available, 4)
        if Array(received.prefix(magicCount)) != Array(AgentProtocol.magic.prefix(magicCount)) {
            if Array(received.prefix(magicCount)) == Array(WireProtocol.magic.prefix(magicCount)) {
                guard available >= 6 else { return }
                let version = UInt16(received[4]) | UInt16(received[5]) << 8
                throw WireError("the program there is a worker of protocol version \(version) that does not know agent mode (this coordinator speaks version \(AgentProtocol.version)): install the same version there")
            }
            throw WireError("the stream does not start with an agent's preamble (got \(Self.describe(received))): is the path a worker binary, and does the login print nothing?")
        }
        guard available >= 6 else { return }
        let version = UInt16(received[4]) | UInt16(received[5]) << 8
        guard version == AgentProtocol.version else {
            throw WireError("the agent there speaks protocol version \(version); this coordinator speaks version \(AgentProtocol.version): install the same version there")
        }
    }

    /// Bytes for an error message: text where they are printable, hex otherwise.
    static func describe(_ bytes: [UInt8]) -> String {
        if bytes.allSatisfy({ $0 >= 0x20 && $0 < 0x7F || $0 == 0x0A || $0 == 0x09 }) {
            return "\"" + String(decoding: bytes, as: UTF8.self) + "\""
        }
        return bytes.map { String($0, radix: 16) }.joined(separator: " ")
    }
}
