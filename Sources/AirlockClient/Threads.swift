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
    fileprivate let handle: UnsafeMutablePointer<sem_t>

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

extension Semaphore {
    /// `sem_trywait`: takes the count if it is positive; false when it is zero.
    func tryWait() -> Bool {
        while sem_trywait(handle) == -1 {
            if errno != EINTR { return false }
        }
        return true
    }
}

/// A mutex with one condition (`pthread_mutex_t` and a `CLOCK_MONOTONIC`
/// `pthread_cond_t`), for a thread that parks until told or until a timeout.
final class ParkingLock: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>

    init() {
        mutex = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        condition = .allocate(capacity: 1)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    func lock() { pthread_mutex_lock(mutex) }
    func unlock() { pthread_mutex_unlock(mutex) }

    /// Wakes the parked thread (call with the lock held).
    func signal() { pthread_cond_signal(condition) }

    /// Waits (lock held) until signalled or `nanoseconds` pass; true when the time passed.
    func wait(nanoseconds: Int) -> Bool {
        var deadline = timespec()
        clock_gettime(CLOCK_MONOTONIC, &deadline)
        let total = Int(deadline.tv_nsec) + nanoseconds
        deadline.tv_sec += total / 1_000_000_000
        deadline.tv_nsec = total % 1_000_000_000
        return pthread_cond_timedwait(condition, mutex, &deadline) == ETIMEDOUT
    }
}
