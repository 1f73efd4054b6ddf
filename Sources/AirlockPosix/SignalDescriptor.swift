import CAirlockShims
import Glibc

/// A set of signals delivered through a descriptor (`signalfd`) instead of handlers.
///
/// Creating one blocks the signals in the calling thread (`pthread_sigmask`); threads
/// created afterwards inherit the mask, so create it on the main thread before any other
/// thread exists, or block the signals in every thread. The descriptor is non-blocking and
/// close-on-exec, and is closed on deinitialization (the signals stay blocked).
public final class SignalDescriptor: Sendable {
    /// One signal read from the descriptor (`struct signalfd_siginfo`).
    public struct SignalInfo: Sendable, Hashable {
        /// The signal number.
        public var signal: Int32
        /// The `si_code`, e.g. `CLD_EXITED` for `SIGCHLD`, `SI_USER` for `kill`.
        public var code: Int32
        /// The sending process (or the child, for `SIGCHLD`).
        public var pid: pid_t
        /// The sender's real uid.
        public var uid: uid_t
        /// For `SIGCHLD`: the exit status or the signal.
        public var status: Int32
    }

    /// The signalfd (non-blocking, close-on-exec), to register with ``Epoll`` or ``Posix/poll(_:for:timeoutMilliseconds:)``.
    public let fd: FileDescriptor
    /// The signals this descriptor reports.
    public let signals: [Int32]

    /// Blocks `signals` in the calling thread and creates a signalfd for them.
    public init(signals: [Int32]) throws(SystemCallError) {
        var set = sigset_t()
        sigemptyset(&set)
        for signal in signals { sigaddset(&set, signal) }
        _ = try retryingInterrupts("pthread_sigmask(SIG_BLOCK)", airlock_sigmask(AIRLOCK_SIG_BLOCK, &set, nil))
        fd = FileDescriptor(rawValue: try retryingInterrupts("signalfd", airlock_signalfd(-1, &set, AIRLOCK_SFD_NONBLOCK | AIRLOCK_SFD_CLOEXEC)))
        self.signals = signals
    }

    deinit {
        _ = Glibc.close(fd.rawValue)
    }

    /// Reads the next pending signal, or `nil` when none is pending.
    public func read() throws(SystemCallError) -> SignalInfo? {
        var info = signalfd_siginfo()
        let size = MemoryLayout<signalfd_siginfo>.size
        guard let count = try retryingInterruptsUnlessWouldBlock("read(signalfd)", Glibc.read(fd.rawValue, &info, size)) else {
            return nil
        }
        guard count == size else { throw SystemCallError(call: "read(signalfd)", errno: .ioError) }
        return SignalInfo(signal: Int32(info.ssi_signo), code: info.ssi_code, pid: pid_t(info.ssi_pid),
                          uid: info.ssi_uid, status: info.ssi_status)
    }

    /// Blocks `signals` in the calling thread (`pthread_sigmask(SIG_BLOCK)`).
    public static func block(_ signals: [Int32]) throws(SystemCallError) {
        var set = sigset_t()
        sigemptyset(&set)
        for signal in signals { sigaddset(&set, signal) }
        _ = try retryingInterrupts("pthread_sigmask(SIG_BLOCK)", airlock_sigmask(AIRLOCK_SIG_BLOCK, &set, nil))
    }

    /// Unblocks `signals` in the calling thread (`pthread_sigmask(SIG_UNBLOCK)`).
    public static func unblock(_ signals: [Int32]) throws(SystemCallError) {
        var set = sigset_t()
        sigemptyset(&set)
        for signal in signals { sigaddset(&set, signal) }
        _ = try retryingInterrupts("pthread_sigmask(SIG_UNBLOCK)", airlock_sigmask(AIRLOCK_SIG_UNBLOCK, &set, nil))
    }
}

/// A counter descriptor (`eventfd`) one thread signals and another polls: the wake-up
/// primitive between worker threads and a poll/epoll loop.
///
/// Non-blocking and close-on-exec; closed on deinitialization.
public final class EventDescriptor: Sendable {
    /// The eventfd, to register with ``Epoll`` or poll.
    public let fd: FileDescriptor

    /// `eventfd(initialValue, EFD_CLOEXEC | EFD_NONBLOCK [| EFD_SEMAPHORE])`. In semaphore mode
    /// each ``consume()`` takes 1 instead of the whole count.
    public init(initialValue: UInt32 = 0, semaphore: Bool = false) throws(SystemCallError) {
        let flags = AIRLOCK_EFD_CLOEXEC | AIRLOCK_EFD_NONBLOCK | (semaphore ? AIRLOCK_EFD_SEMAPHORE : 0)
        fd = FileDescriptor(rawValue: try retryingInterrupts("eventfd", airlock_eventfd(initialValue, flags)))
    }

    deinit {
        _ = Glibc.close(fd.rawValue)
    }

    /// Adds `value` to the counter, making the descriptor readable. Safe from any thread.
    /// An overflowing counter (2^64-2, practically never) is left as it is: already readable.
    public func signal(_ value: UInt64 = 1) throws(SystemCallError) {
        var value = value
        _ = try retryingInterruptsUnlessWouldBlock("write(eventfd)", Glibc.write(fd.rawValue, &value, 8))
    }

    /// Reads and resets the counter (or takes 1 in semaphore mode); `nil` when it is zero.
    public func consume() throws(SystemCallError) -> UInt64? {
        var value: UInt64 = 0
        guard try retryingInterruptsUnlessWouldBlock("read(eventfd)", Glibc.read(fd.rawValue, &value, 8)) != nil else {
            return nil
        }
        return value
    }
}
