/// Copies workers' standard error to this process's standard error from a thread of its own.
///
/// The event loop must never block on our stderr (a parent that reads it only at the end would
/// otherwise stall every worker), so it hands bytes over here; if more than `capacity` bytes are
/// waiting, the excess is dropped and a note says how much.
final class ErrorStreamForwarder: @unchecked Sendable {
    // @unchecked: the mutable state below is only touched with `condition` locked.
    private let condition = ThreadCondition()
    private var chunks: [[UInt8]] = []
    private var bufferedBytes = 0
    private var droppedBytes = 0
    private var isStopping = false
    private let capacity: Int

    /// - Throws: ``SystemCallError`` if its thread cannot be started.
    init(capacity: Int = 1 << 20) throws(SystemCallError) {
        self.capacity = capacity
        try startOwnedThread(name: "mp-stderr", stackSize: 128 * 1024) {
            self.run()  // the thread keeps the forwarder until it is stopped
        }
    }

    /// Queues bytes for stderr without blocking.
    func forward(_ bytes: UnsafeRawBufferPointer) {
        condition.lock()
        if bufferedBytes + bytes.count > capacity {
            droppedBytes += bytes.count
        } else {
            chunks.append(Array(bytes))
            bufferedBytes += bytes.count
        }
        condition.signal()
        condition.unlock()
    }

    /// Writes what is queued, then ends the thread.
    func stop() {
        condition.lock()
        isStopping = true
        condition.signal()
        condition.unlock()
    }

    private func run() {
        while true {
            condition.lock()
            while chunks.isEmpty && droppedBytes == 0 && !isStopping { condition.wait() }
            let pending = chunks
            let dropped = droppedBytes
            let finished = isStopping && chunks.isEmpty && droppedBytes == 0
            chunks.removeAll()
            bufferedBytes = 0
            droppedBytes = 0
            condition.unlock()
            if finished { return }
            for chunk in pending {
                chunk.withUnsafeBytes { try? StandardStream.error.writeAll($0) }
            }
            if dropped > 0 {
                let note = Array("\n[multiprocessing: \(dropped) bytes of worker stderr dropped: stderr is not being read]\n".utf8)
                note.withUnsafeBytes { try? StandardStream.error.writeAll($0) }
            }
        }
    }
}
