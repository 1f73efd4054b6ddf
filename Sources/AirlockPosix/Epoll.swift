import CAirlockShims
import Glibc

/// An epoll instance for a single-threaded reactor.
///
/// Registration (`add`, `modify`, `remove`) may happen from any thread; ``wait(timeoutMilliseconds:)``
/// fills one buffer allocated at creation and must be called from one thread at a time.
/// The descriptor is closed when the instance is deinitialized.
public final class Epoll: @unchecked Sendable {
    /// Readiness events and registration options.
    public struct Events: OptionSet, Sendable, Hashable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        /// `EPOLLIN`: readable (or a pending connection on a listening socket).
        public static let input = Events(rawValue: AIRLOCK_EPOLLIN)
        /// `EPOLLOUT`: writable.
        public static let output = Events(rawValue: AIRLOCK_EPOLLOUT)
        /// `EPOLLRDHUP`: the peer shut down its writing half.
        public static let readHangup = Events(rawValue: AIRLOCK_EPOLLRDHUP)
        /// `EPOLLHUP`: hang-up (always reported, need not be requested).
        public static let hangup = Events(rawValue: AIRLOCK_EPOLLHUP)
        /// `EPOLLERR`: error condition (always reported, need not be requested).
        public static let error = Events(rawValue: AIRLOCK_EPOLLERR)
        /// `EPOLLET`: edge-triggered registration.
        public static let edgeTriggered = Events(rawValue: AIRLOCK_EPOLLET)
        /// `EPOLLONESHOT`: disarm after one event until ``Epoll/modify(_:events:userData:)``.
        public static let oneShot = Events(rawValue: AIRLOCK_EPOLLONESHOT)
    }

    /// One ready registration: what happened and the datum given when registering.
    public struct Event: Sendable, Hashable {
        public var events: Events
        public var userData: UInt64
    }

    /// The events returned by one ``Epoll/wait(timeoutMilliseconds:)``. A view of the instance's
    /// buffer: valid until the next `wait`; copy what must outlive it.
    public struct ReadyEvents: RandomAccessCollection {
        fileprivate let buffer: UnsafeBufferPointer<epoll_event>
        public var startIndex: Int { 0 }
        public var endIndex: Int { buffer.count }
        public subscript(position: Int) -> Event {
            let raw = buffer[position]
            return Event(events: Events(rawValue: raw.events), userData: raw.data.u64)
        }
    }

    /// The epoll descriptor itself (close-on-exec), e.g. to nest it in another poller.
    public let fd: FileDescriptor
    private let buffer: UnsafeMutableBufferPointer<epoll_event>

    /// `epoll_create1(EPOLL_CLOEXEC)`, with room for `maximumEvents` events per wait.
    public init(maximumEvents: Int = 64) throws(SystemCallError) {
        precondition(maximumEvents > 0)
        fd = FileDescriptor(rawValue: try retryingInterrupts("epoll_create1", epoll_create1(Int32(EPOLL_CLOEXEC))))
        buffer = .allocate(capacity: maximumEvents)
        buffer.initialize(repeating: epoll_event())
    }

    deinit {
        _ = Glibc.close(fd.rawValue)
        buffer.deallocate()
    }

    /// `epoll_ctl(ADD)`: watches `target` for `events`, reporting `userData` when ready.
    public func add(_ target: FileDescriptor, events: Events, userData: UInt64) throws(SystemCallError) {
        try control(EPOLL_CTL_ADD, "epoll_ctl(ADD, \(target.rawValue))", target, events, userData)
    }

    /// `epoll_ctl(MOD)`: changes the events and datum of a watched descriptor.
    public func modify(_ target: FileDescriptor, events: Events, userData: UInt64) throws(SystemCallError) {
        try control(EPOLL_CTL_MOD, "epoll_ctl(MOD, \(target.rawValue))", target, events, userData)
    }

    /// `epoll_ctl(DEL)`: stops watching `target`. Call it before closing a descriptor that
    /// may have duplicates elsewhere.
    public func remove(_ target: FileDescriptor) throws(SystemCallError) {
        try control(EPOLL_CTL_DEL, "epoll_ctl(DEL, \(target.rawValue))", target, [], 0)
    }

    private func control(_ operation: Int32, _ call: @autoclosure () -> String, _ target: FileDescriptor, _ events: Events, _ userData: UInt64) throws(SystemCallError) {
        var event = epoll_event()
        event.events = events.rawValue
        event.data.u64 = userData
        _ = try retryingInterrupts(call(), epoll_ctl(fd.rawValue, operation, target.rawValue, &event))
    }

    /// `epoll_wait`: waits up to `timeoutMilliseconds` (-1 = forever, 0 = poll) for ready
    /// registrations. Returns an empty collection on timeout or when interrupted by a signal
    /// (the reactor loop recomputes its timeout and waits again). Allocates nothing.
    public func wait(timeoutMilliseconds: Int32) throws(SystemCallError) -> ReadyEvents {
        let count = epoll_wait(fd.rawValue, buffer.baseAddress, Int32(buffer.count), timeoutMilliseconds)
        if count == -1 {
            if Glibc.errno == EINTR { return ReadyEvents(buffer: UnsafeBufferPointer(start: buffer.baseAddress, count: 0)) }
            throw SystemCallError(call: "epoll_wait")
        }
        return ReadyEvents(buffer: UnsafeBufferPointer(start: buffer.baseAddress, count: Int(count)))
    }
}
