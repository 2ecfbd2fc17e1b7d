import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The machine's limits for this transport: two processes and a pair of pipes, nothing else.
/// The peer is this program started in `pipe-peer` mode, so both ends are the same binary and
/// pay the same start-up; only the timed loops count.
enum RawPipe {
    /// What the peer does with its stdin.
    enum PeerMode: String {
        /// Writes back each byte it reads (ping-pong).
        case echo
        /// Reads until end of input, then writes the byte count as 8 bytes (bandwidth).
        case sink
    }

    /// The peer's side; never returns.
    static func servePeer(_ mode: PeerMode) -> Never {
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var total: UInt64 = 0
        while true {
            let count = buffer.withUnsafeMutableBytes { read(0, $0.baseAddress, mode == .echo ? 1 : $0.count) }
            if count <= 0 { break }
            total += UInt64(count)
            if mode == .echo {
                _ = buffer.withUnsafeBytes { write(1, $0.baseAddress, count) }
            }
        }
        if mode == .sink {
            var value = total
            _ = withUnsafeBytes(of: &value) { write(1, $0.baseAddress, 8) }
        }
        exit(0)
    }

    /// A running peer and the parent's ends of its pipes.
    private struct Peer {
        let process: Process
        let toPeer: Int32
        let fromPeer: Int32
        let input: Pipe
        let output: Pipe

        init(mode: PeerMode) throws {
            process = Process()
            process.executableURL = URL(fileURLWithPath: CommandLine.arguments[0])
            process.arguments = ["pipe-peer", mode.rawValue]
            input = Pipe()
            output = Pipe()
            process.standardInput = input
            process.standardOutput = output
            try process.run()
            toPeer = input.fileHandleForWriting.fileDescriptor
            fromPeer = output.fileHandleForReading.fileDescriptor
            // The same pipe size the pool asks for its workers' pipes (F_SETPIPE_SZ, which
            // Glibc's module does not export).
            let setPipeSize: Int32 = 1024 + 7
            _ = fcntl(toPeer, setPipeSize, 1 << 20)
        }

        func finish() {
            try? input.fileHandleForWriting.close()
            process.waitUntilExit()
        }
    }

    /// One-byte round trips: returns each round trip's duration in seconds.
    static func pingPong(roundTrips: Int, warmUp: Int = 200) throws -> [Double] {
        let peer = try Peer(mode: .echo)
        defer { peer.finish() }
        var byte: UInt8 = 1
        var samples: [Double] = []
        samples.reserveCapacity(roundTrips)
        let clock = ContinuousClock()
        for index in 0..<(warmUp + roundTrips) {
            let start = clock.now
            guard write(peer.toPeer, &byte, 1) == 1, read(peer.fromPeer, &byte, 1) == 1 else {
                throw BenchmarkError("the pipe peer stopped answering")
            }
            if index >= warmUp { samples.append(seconds(clock.now - start)) }
        }
        return samples
    }

    /// Sends `count` messages of `size` bytes through a pipe; returns MiB/s.
    static func bandwidth(count: Int, size: Int) throws -> Double {
        let peer = try Peer(mode: .sink)
        let message = [UInt8](repeating: 3, count: size)
        let clock = ContinuousClock()
        let start = clock.now
        for _ in 0..<count {
            var offset = 0
            while offset < size {
                let written = message.withUnsafeBytes { write(peer.toPeer, $0.baseAddress! + offset, size - offset) }
                guard written > 0 else { throw BenchmarkError("the pipe peer stopped reading") }
                offset += written
            }
        }
        try? peer.input.fileHandleForWriting.close()
        var total: UInt64 = 0
        guard withUnsafeMutableBytes(of: &total, { read(peer.fromPeer, $0.baseAddress, 8) }) == 8,
            total == UInt64(count * size)
        else { throw BenchmarkError("the pipe peer received \(total) of \(count * size) bytes") }
        let elapsed = seconds(clock.now - start)
        peer.process.waitUntilExit()
        return Double(count * size) / 1_048_576 / elapsed
    }
}
