import Synchronization

/// The way a running job sends output before its result: installed by the worker's serve loop
/// (one per process), used by ``CommandJob`` when its input asks for streaming
/// (`pool run --line-buffer`).
package enum StreamedOutput {
    private static let sender = Mutex<(@Sendable (Int, UnsafeRawBufferPointer) -> Void)?>(nil)

    /// Sends bytes for stream 0 (stdout) or 1 (stderr) of the job running now, in an output
    /// frame of their own. Nil outside a worker.
    package static var send: (@Sendable (Int, UnsafeRawBufferPointer) -> Void)? {
        sender.withLock { $0 }
    }

    static func install(_ send: @escaping @Sendable (Int, UnsafeRawBufferPointer) -> Void) {
        sender.withLock { $0 = send }
    }
}
