import CMultiprocessingShims

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An open file descriptor. Ownership is explicit: whoever holds it calls `close()` once.
struct FileDescriptor: Hashable, Sendable, CustomStringConvertible {
    let rawValue: CInt

    static let standardInput = FileDescriptor(rawValue: 0)
    static let standardOutput = FileDescriptor(rawValue: 1)
    static let standardError = FileDescriptor(rawValue: 2)

    var description: String { "fd \(rawValue)" }

    /// The outcome of a read or write on a non-blocking descriptor.
    enum IOResult: Equatable {
        /// This many bytes were transferred (zero on a read means end of file).
        case transferred(Int)
        /// The descriptor is not ready; poll before trying again.
        case wouldBlock
    }

    /// Creates a pipe whose two ends are close-on-exec and never numbered 0, 1 or 2, so that
    /// a spawn's `dup2` onto the standard descriptors always clears close-on-exec.
    ///
    /// The corresponding C function is `pipe2(2)` with `O_CLOEXEC`.
    static func pipe(nonBlocking: Bool = false) throws(SystemCallError) -> (readEnd: FileDescriptor, writeEnd: FileDescriptor) {
        var fds: [CInt] = [-1, -1]
        _ = try systemCall("pipe2") { mp_pipe_cloexec(&fds, nonBlocking ? 1 : 0) }
        let readEnd: FileDescriptor
        do {
            readEnd = try FileDescriptor(rawValue: fds[0]).movedAboveStandardStreams()
        } catch {
            // On failure the original is still open (and still ours).
            _ = sysClose(fds[0])
            _ = sysClose(fds[1])
            throw error
        }
        do {
            return (readEnd, try FileDescriptor(rawValue: fds[1]).movedAboveStandardStreams())
        } catch {
            readEnd.close()  // fds[0] itself may have been closed by the move already
            _ = sysClose(fds[1])
            throw error
        }
    }

    /// Opens `/dev/null` close-on-exec.
    static func openNullDevice(writable: Bool) throws(SystemCallError) -> FileDescriptor {
        let fd = try systemCall("open(/dev/null)") {
            open("/dev/null", (writable ? O_WRONLY : O_RDONLY) | O_CLOEXEC)
        }
        return FileDescriptor(rawValue: fd)
    }

    /// If this descriptor is 0, 1 or 2, duplicates it to 3 or above and closes the original.
    /// A process whose standard streams were closed gets such numbers from `pipe`.
    func movedAboveStandardStreams() throws(SystemCallError) -> FileDescriptor {
        guard rawValue <= 2 else { return self }
        let moved = try duplicate(minimum: 3)
        close()
        return moved
    }

    /// A close-on-exec duplicate numbered `minimum` or above.
    ///
    /// The corresponding C function is `fcntl(2)` with `F_DUPFD_CLOEXEC`.
    func duplicate(minimum: CInt = 3) throws(SystemCallError) -> FileDescriptor {
        FileDescriptor(rawValue: try systemCall("fcntl(F_DUPFD_CLOEXEC)") { mp_dup_cloexec(rawValue, minimum) })
    }

    /// Makes `target` refer to this descriptor's file (`dup2(2)`); the result is not close-on-exec.
    func duplicate(as target: FileDescriptor) throws(SystemCallError) {
        _ = try systemCall("dup2") { dup2(rawValue, target.rawValue) }
    }

    /// A second descriptor for the same pipe, non-blocking, with file status flags of its own:
    /// Linux opens a pipe again through `/proc/self/fd`, so making it non-blocking does not
    /// touch the open file others may share with this descriptor. Nil where this is not a pipe
    /// (a socket under `ssh`, a terminal) or `/proc` is missing.
    func reopenedNonBlocking() -> FileDescriptor? {
        // In C: building the path with Swift's string interpolation cost every worker about
        // 0.45 MiB of resident memory (idle pool-worker 10.2 -> 9.7 MiB), the standard
        // library's code it touches.
        let fd = mp_reopen_pipe_nonblocking(rawValue)
        guard fd >= 0 else { return nil }
        let reopened = FileDescriptor(rawValue: fd)
        do {
            return try reopened.movedAboveStandardStreams()
        } catch {
            reopened.close()
            return nil
        }
    }

    func setNonBlocking() throws(SystemCallError) {
        _ = try systemCall("fcntl(O_NONBLOCK)") { mp_set_nonblocking(rawValue) }
    }

    /// Asks for a larger pipe buffer; failure is harmless (the default size still works).
    ///
    /// The corresponding C function is `fcntl(2)` with `F_SETPIPE_SZ`.
    func trySetPipeBufferSize(_ bytes: Int) {
        _ = mp_set_pipe_size(rawValue, CInt(clamping: bytes))
    }

    /// Closes the descriptor. `EINTR` is not retried: on Linux the descriptor is gone anyway.
    func close() {
        _ = sysClose(rawValue)
    }

    /// Reads up to `buffer.count` bytes, retrying on interruption.
    func read(into buffer: UnsafeMutableRawBufferPointer) throws(SystemCallError) -> IOResult {
        while true {
            let count = sysRead(rawValue, buffer.baseAddress, buffer.count)
            if count >= 0 { return .transferred(count) }
            let error = Errno.current
            if error == .interrupted { continue }
            if error == .wouldBlock { return .wouldBlock }
            throw SystemCallError(call: "read", errno: error)
        }
    }

    /// Writes up to `buffer.count` bytes, retrying on interruption.
    func write(_ buffer: UnsafeRawBufferPointer) throws(SystemCallError) -> IOResult {
        while true {
            let count = sysWrite(rawValue, buffer.baseAddress, buffer.count)
            if count >= 0 { return .transferred(count) }
            let error = Errno.current
            if error == .interrupted { continue }
            if error == .wouldBlock { return .wouldBlock }
            throw SystemCallError(call: "write", errno: error)
        }
    }

    /// Writes the buffers in order, as one `writev(2)`, retrying on interruption; as much as
    /// the descriptor takes now.
    func write(gathering buffers: [UnsafeRawBufferPointer]) throws(SystemCallError) -> IOResult {
        var vectors = buffers.map { iovec(iov_base: UnsafeMutableRawPointer(mutating: $0.baseAddress), iov_len: $0.count) }
        while true {
            let count = vectors.withUnsafeMutableBufferPointer { writev(rawValue, $0.baseAddress, CInt($0.count)) }
            if count >= 0 { return .transferred(count) }
            let error = Errno.current
            if error == .interrupted { continue }
            if error == .wouldBlock { return .wouldBlock }
            throw SystemCallError(call: "writev", errno: error)
        }
    }

    /// Reads at least one byte, trying for up to `duration` without sleeping first, then
    /// waiting as ``readWaiting(into:)`` does; 0 at end of file.
    ///
    /// - Parameter readsWithoutWaiting: Whether the descriptor is non-blocking. Then each try
    ///   is the read itself, one system call that brings the bytes when they come; otherwise
    ///   each try is a `poll`, and the read follows once there is something to read.
    func readSpinning(into buffer: UnsafeMutableRawBufferPointer, for duration: Duration, readsWithoutWaiting: Bool) throws(SystemCallError) -> Int {
        let clock = ContinuousClock()
        let end = clock.now + duration
        var entry = pollfd(fd: rawValue, events: Int16(POLLIN), revents: 0)
        var round = 0
        repeat {
            if readsWithoutWaiting {
                if case .transferred(let count) = try read(into: buffer) { return count }
            } else if poll(&entry, 1, 0) != 0 {
                break
            }
            // If the thread we wait for shares this core, let it run; now and then only, as
            // a yield costs more than a try and delays seeing the data.
            round &+= 1
            if round & 7 == 0 { sched_yield() }
        } while clock.now < end
        return try readWaiting(into: buffer)
    }

    /// Writes every byte of `buffer`, blocking as needed. For blocking descriptors owned by
    /// the calling thread (a worker's protocol output, the coordinator's forwarded stderr).
    func writeAll(_ buffer: UnsafeRawBufferPointer) throws(SystemCallError) {
        var offset = 0
        while offset < buffer.count {
            switch try write(UnsafeRawBufferPointer(rebasing: buffer[offset...])) {
            case .transferred(let count): offset += count
            case .wouldBlock: waitUntilWritable()
            }
        }
    }

    /// Reads at least one byte, waiting for one if the descriptor is non-blocking; returns 0
    /// at end of file.
    func readWaiting(into buffer: UnsafeMutableRawBufferPointer) throws(SystemCallError) -> Int {
        while true {
            switch try read(into: buffer) {
            case .transferred(let count): return count
            case .wouldBlock: waitUntilReadable()
            }
        }
    }

    private func waitUntilWritable() {
        var entry = pollfd(fd: rawValue, events: Int16(POLLOUT), revents: 0)
        _ = sysPoll(&entry, 1, -1)
    }

    private func waitUntilReadable() {
        var entry = pollfd(fd: rawValue, events: Int16(POLLIN), revents: 0)
        _ = sysPoll(&entry, 1, -1)
    }
}

// File-scope names for the C calls whose names the methods above reuse.
@inline(__always) private func sysClose(_ fd: CInt) -> CInt { close(fd) }
@inline(__always) private func sysRead(_ fd: CInt, _ buffer: UnsafeMutableRawPointer?, _ count: Int) -> Int { read(fd, buffer, count) }
@inline(__always) private func sysWrite(_ fd: CInt, _ buffer: UnsafeRawPointer?, _ count: Int) -> Int { write(fd, buffer, count) }
@inline(__always) private func sysPoll(_ entries: UnsafeMutablePointer<pollfd>, _ count: Int, _ timeout: CInt) -> CInt { poll(entries, nfds_t(count), timeout) }
