import AirlockPosix
import Glibc

/// Dedicated OS threads and a semaphore to wait on from them: the client's reader runs on
/// its own thread, never on a Swift concurrency pool thread, and the blocking API parks
/// its caller on a semaphore. Each pthread/semaphore call is wrapped here once.
enum OSThread {
    private final class Body {
        let run: @Sendable () -> Void
        init(_ run: @escaping @Sendable () -> Void) { self.run = run }
    }

    /// Starts a detached thread named `name` (at most 15 bytes are kept) running `body`.
    static func start(name: String, _ body: @escaping @Sendable () -> Void) throws(SystemCallError) {
        let context = Unmanaged.passRetained(Body {
            try? ProcessControl.setName(name)
            body()
        }).toOpaque()
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        var thread = pthread_t()
        let result = pthread_create(&thread, &attributes, { context in
            let body = Unmanaged<Body>.fromOpaque(context!).takeRetainedValue()
            body.run()
            return nil
        }, context)
        if result != 0 {
            Unmanaged<Body>.fromOpaque(context).release()
            throw SystemCallError(call: "pthread_create", errno: Errno(rawValue: result))
        }
    }
}

/// A counting semaphore (`sem_t`) for a thread that waits on one operation's answer.
final class Semaphore: @unchecked Sendable {
    private let handle: UnsafeMutablePointer<sem_t>

    init() {
        handle = .allocate(capacity: 1)
        sem_init(handle, 0, 0)
    }

    deinit {
        sem_destroy(handle)
        handle.deallocate()
    }

    /// `sem_post`.
    func signal() {
        sem_post(handle)
    }

    /// `sem_wait`, retried on `EINTR`.
    func wait() {
        while sem_wait(handle) == -1 && errno == EINTR {}
    }
}
