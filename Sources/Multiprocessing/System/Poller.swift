import CMultiprocessingShims
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Readiness of one descriptor, as the event loop asks for it and as `poll` reports it.
struct PollInterest: OptionSet {
    let rawValue: Int16
    static let readable = PollInterest(rawValue: Int16(POLLIN))
    static let writable = PollInterest(rawValue: Int16(POLLOUT))
    /// The peer closed its end, or the descriptor is in error: reads will say why.
    static let hangUp = PollInterest(rawValue: Int16(POLLHUP | POLLERR | POLLNVAL))
}

/// A reusable `poll(2)` set. The event loop watches a handful of descriptors per worker, so
/// `poll` costs the same as `epoll` here and works on every POSIX system.
struct PollSet {
    private var entries: [pollfd] = []

    mutating func removeAll() { entries.removeAll(keepingCapacity: true) }

    /// Adds a descriptor and returns its slot, for `events(at:)` after the wait.
    @discardableResult
    mutating func add(_ descriptor: FileDescriptor, _ interest: PollInterest) -> Int {
        entries.append(pollfd(fd: descriptor.rawValue, events: interest.rawValue, revents: 0))
        return entries.count - 1
    }

    func events(at slot: Int) -> PollInterest { PollInterest(rawValue: entries[slot].revents) }

    /// Waits until a descriptor is ready or `timeoutMilliseconds` pass (-1: no limit).
    /// Waits for an event or the timeout; returns how many descriptors have events.
    @discardableResult
    mutating func wait(timeoutMilliseconds: Int32) throws(SystemCallError) -> Int {
        let count = entries.count
        return Int(try entries.withUnsafeMutableBufferPointer { buffer throws(SystemCallError) in
            try systemCall("poll") { poll(buffer.baseAddress, nfds_t(count), timeoutMilliseconds) }
        })
    }
}

/// Wakes a thread blocked in `PollSet.wait` from any thread: an eventfd on Linux, a pipe elsewhere.
///
/// The owner closes it when its loop ends, so no descriptor outlives a pool's shutdown; a lock
/// makes a late `wake()` a no-op rather than a write to a descriptor number reused since.
final class Waker: Sendable {
    /// The descriptor to poll for readability.
    let descriptor: FileDescriptor
    private let writeDescriptor: FileDescriptor
    private let isOpen = Mutex(true)

    init() throws(SystemCallError) {
        let eventDescriptor = mp_eventfd_cloexec()
        if eventDescriptor >= 0 {
            descriptor = FileDescriptor(rawValue: eventDescriptor)
            writeDescriptor = descriptor
        } else {
            let pipe = try FileDescriptor.pipe(nonBlocking: true)
            descriptor = pipe.readEnd
            writeDescriptor = pipe.writeEnd
        }
    }

    /// Makes the descriptor readable. Non-blocking; a full counter or pipe means a wake-up is
    /// already pending, which is all that is needed.
    func wake() {
        isOpen.withLock { isOpen in
            guard isOpen else { return }
            var one: UInt64 = 1
            _ = withUnsafeBytes(of: &one) { bytes in
                try? writeDescriptor.write(UnsafeRawBufferPointer(rebasing: bytes[0..<(writeDescriptor == descriptor ? 8 : 1)]))
            }
        }
    }

    /// Consumes pending wake-ups.
    func drain() {
        var scratch = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        repeat {
            let result = withUnsafeMutableBytes(of: &scratch) { try? descriptor.read(into: $0) }
            guard case .transferred(let count)? = result, count > 0 else { return }
        } while writeDescriptor != descriptor  // one read resets an eventfd's counter
    }

    /// Closes the descriptors; later `wake()` calls do nothing.
    func close() {
        isOpen.withLock { isOpen in
            guard isOpen else { return }
            isOpen = false
            descriptor.close()
            if writeDescriptor != descriptor { writeDescriptor.close() }
        }
    }

    deinit { close() }
}

/// Names the calling thread. Foundation's `Thread.name` does not reach the kernel on Linux, so
/// threads that should be recognisable in `ps -T` or a crash report name themselves.
func nameCurrentThread(_ name: String) { mp_set_current_thread_name(name) }

/// Blocks SIGPIPE for the calling thread only (see `mp_block_sigpipe_on_this_thread`).
func blockBrokenPipeSignal() { mp_block_sigpipe_on_this_thread() }
