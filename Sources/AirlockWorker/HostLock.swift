import Glibc

/// The worker's one lock, with two condition variables: ``changed`` for threads that
/// wait on operation state (flow control, completions, shutdown) and ``jobsQueued`` for
/// the housekeeping thread.
///
/// A `pthread` mutex rather than `Synchronization.Mutex` because waiting needs condition
/// variables. Timed waits use `CLOCK_MONOTONIC`. Never held while calling into the
/// plug-in: host callbacks re-enter the worker from plug-in code.
final class HostLock: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let changedCondition: UnsafeMutablePointer<pthread_cond_t>
    private let jobsCondition: UnsafeMutablePointer<pthread_cond_t>
    /// Threads waiting on ``changed`` (guarded by the lock): ``broadcastChange()`` skips
    /// the system call when there are none.
    private var changeWaiters = 0

    init() {
        mutex = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        changedCondition = .allocate(capacity: 1)
        jobsCondition = .allocate(capacity: 1)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(changedCondition, &attributes)
        pthread_cond_init(jobsCondition, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    @inline(__always) func lock() { pthread_mutex_lock(mutex) }
    @inline(__always) func unlock() { pthread_mutex_unlock(mutex) }

    @inline(__always)
    func withLock<Result>(_ body: () throws -> Result) rethrows -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    /// Waits (lock held) until another thread calls ``broadcastChange()``.
    func waitForChange() {
        changeWaiters += 1
        pthread_cond_wait(changedCondition, mutex)
        changeWaiters -= 1
    }

    /// Waits (lock held) for a change or until `deadline` (``monotonicNow()`` scale);
    /// returns false when the deadline has passed.
    func waitForChange(until deadline: UInt64) -> Bool {
        if HostLock.monotonicNow() >= deadline { return false }
        var time = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
        changeWaiters += 1
        let result = pthread_cond_timedwait(changedCondition, mutex, &time)
        changeWaiters -= 1
        return result != ETIMEDOUT
    }

    /// Wakes every thread in ``waitForChange()`` (lock held).
    @inline(__always)
    func broadcastChange() {
        if changeWaiters > 0 { pthread_cond_broadcast(changedCondition) }
    }

    /// Waits (lock held) until ``signalJobs()``.
    func waitForJobs() { pthread_cond_wait(jobsCondition, mutex) }

    /// Wakes the housekeeping thread (lock held).
    func signalJobs() { pthread_cond_signal(jobsCondition) }

    /// `CLOCK_MONOTONIC` in nanoseconds.
    static func monotonicNow() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) &* 1_000_000_000 &+ UInt64(time.tv_nsec)
    }
}
