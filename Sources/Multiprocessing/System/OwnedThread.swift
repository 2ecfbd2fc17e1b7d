#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Starts a detached thread that the library owns (the event loop, a worker's job thread, a
/// watchdog), named `name` for `ps`, `top` and debuggers.
///
/// Plain pthreads rather than Foundation's `Thread`: the library does without Foundation, which
/// would cost every worker time to start and about 2 MiB of memory.
///
/// - Parameters:
///   - name: At most 15 bytes on Linux.
///   - stackSize: The stack size in bytes; nil for the system default.
///   - body: What the thread runs; the thread ends when it returns.
/// - Throws: ``SystemCallError`` naming `pthread_create` and its error (`EAGAIN` when a limit on
///   threads or processes, such as `RLIMIT_NPROC`, is reached).
func startOwnedThread(name: String, stackSize: Int? = nil, _ body: @escaping @Sendable () -> Void) throws(SystemCallError) {
    final class Context {
        let name: String
        let body: @Sendable () -> Void
        init(name: String, body: @escaping @Sendable () -> Void) {
            self.name = name
            self.body = body
        }
    }
    var attributes = pthread_attr_t()
    pthread_attr_init(&attributes)
    defer { pthread_attr_destroy(&attributes) }
    pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
    if let stackSize { pthread_attr_setstacksize(&attributes, max(stackSize, Int(PTHREAD_STACK_MIN))) }
    let context = Unmanaged.passRetained(Context(name: name, body: body)).toOpaque()
    #if canImport(Glibc)
    var thread = pthread_t()
    #else
    var thread: pthread_t?
    #endif
    let result = pthread_create(&thread, &attributes, { pointer in
        #if canImport(Glibc)
        guard let pointer else { return nil }
        #endif
        let context = Unmanaged<Context>.fromOpaque(pointer).takeRetainedValue()
        nameCurrentThread(context.name)
        context.body()
        return nil
    }, context)
    do {
        try systemCallReturningError("pthread_create(\(name))") { result }
    } catch {
        Unmanaged<Context>.fromOpaque(context).release()
        throw error
    }
}

/// A mutex with a condition variable: for the library's own threads, which sleep until another
/// thread hands them work. (Swift's `Mutex` has no way to wait.)
final class ThreadCondition: @unchecked Sendable {
    // @unchecked: the pthread objects are what make this safe to share.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t> = .allocate(capacity: 1)
    private let condition: UnsafeMutablePointer<pthread_cond_t> = .allocate(capacity: 1)

    init() {
        mutex.initialize(to: pthread_mutex_t())
        condition.initialize(to: pthread_cond_t())
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    func lock() { pthread_mutex_lock(mutex) }

    func unlock() { pthread_mutex_unlock(mutex) }

    /// Releases the lock, sleeps until signalled (or spuriously), and takes the lock again.
    func wait() { pthread_cond_wait(condition, mutex) }

    /// Wakes one waiting thread.
    func signal() { pthread_cond_signal(condition) }
}
