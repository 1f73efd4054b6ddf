import CSystemd
import Glibc

/// An `sd_notify(3)` call failed: the message did not reach the service manager.
public struct SystemdNotifyError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The `errno` value that `sd_notify` returned (negated back to positive).
    public let errno: Int32
    /// The notification that could not be sent, newline-separated as on the wire.
    public let message: String

    public init(errno: Int32, message: String) {
        self.errno = errno
        self.message = message
    }

    public var description: String {
        "sd_notify(\(message.split(separator: "\n").joined(separator: " "))) failed: \(String(cString: strerror(errno)))"
    }
}

/// Tells the service manager about the service's state through `$NOTIFY_SOCKET`
/// (`sd_notify(3)`), as a `Type=notify` service must.
///
/// Every method is a no-op that returns `false` when the process was not started by
/// systemd with a notification socket (``isEnabled`` is false), so callers do not need
/// to check first. Each returns `true` when the message was sent.
///
/// The unit uses `NotifyAccess=main`, so call these from the main process (the one
/// systemd started), not from a worker.
///
/// ```swift
/// let notifier = SystemdNotifier()
/// try notifier.ready(status: "2 plug-ins, 0 shells")
/// if let interval = notifier.watchdogInterval { /* call watchdog() every interval / 2 */ }
/// ```
public struct SystemdNotifier: Sendable {
    /// Creates a notifier. It reads `$NOTIFY_SOCKET` on every call, never caches it.
    public init() {}

    /// Whether the process has a notification socket (`$NOTIFY_SOCKET` is set and not empty).
    public var isEnabled: Bool {
        guard let value = getenv("NOTIFY_SOCKET") else { return false }
        return value.pointee != 0
    }

    /// The watchdog timeout systemd enforces (`WatchdogSec=`), or `nil` when the watchdog is
    /// off or meant for another process (`sd_watchdog_enabled(3)`: `$WATCHDOG_USEC`, checked
    /// against `$WATCHDOG_PID`). Call ``watchdog()`` at half this interval.
    public var watchdogInterval: Duration? {
        var microseconds: UInt64 = 0
        guard sd_watchdog_enabled(0, &microseconds) > 0, microseconds > 0 else { return nil }
        return .microseconds(Int64(clamping: microseconds))
    }

    /// Reports the service started up (or finished reloading): `READY=1` and `STATUS=status`.
    @discardableResult
    public func ready(status: String) throws(SystemdNotifyError) -> Bool {
        try send(["READY=1", Self.statusAssignment(status)])
    }

    /// Updates the one-line status shown by `systemctl status`: `STATUS=status`.
    @discardableResult
    public func status(_ status: String) throws(SystemdNotifyError) -> Bool {
        try send([Self.statusAssignment(status)])
    }

    /// Keeps the watchdog from firing: `WATCHDOG=1`.
    @discardableResult
    public func watchdog() throws(SystemdNotifyError) -> Bool {
        try send(["WATCHDOG=1"])
    }

    /// Reports the service is shutting down: `STOPPING=1` and `STATUS=status`.
    @discardableResult
    public func stopping(status: String) throws(SystemdNotifyError) -> Bool {
        try send(["STOPPING=1", Self.statusAssignment(status)])
    }

    /// Reports a configuration reload started: `RELOADING=1` and
    /// `MONOTONIC_USEC=<CLOCK_MONOTONIC in µs>` (systemd 253+ uses it to order the reload
    /// against its own request; older versions ignore it). Send ``ready(status:)`` when the
    /// reload is done, whether it succeeded or not.
    @discardableResult
    public func reloading(status: String? = nil) throws(SystemdNotifyError) -> Bool {
        var assignments = ["RELOADING=1", "MONOTONIC_USEC=\(Self.monotonicMicroseconds())"]
        if let status { assignments.append(Self.statusAssignment(status)) }
        return try send(assignments)
    }

    /// Asks for more time to start, reload or stop: `EXTEND_TIMEOUT_USEC=` (systemd 236+).
    @discardableResult
    public func extendTimeout(by duration: Duration) throws(SystemdNotifyError) -> Bool {
        try send(["EXTEND_TIMEOUT_USEC=\(Self.microseconds(duration))"])
    }

    /// Sends raw `VARIABLE=value` assignments, one per element, in one datagram.
    ///
    /// Newlines inside an assignment would start a new one, so they are replaced by spaces.
    @discardableResult
    public func send(_ assignments: [String]) throws(SystemdNotifyError) -> Bool {
        let message = assignments.map(Self.singleLine).joined(separator: "\n")
        let result = sd_notify(0, message)
        if result < 0 { throw SystemdNotifyError(errno: -result, message: message) }
        return result > 0
    }

    // MARK: Formatting (internal for tests)

    static func statusAssignment(_ status: String) -> String {
        "STATUS=" + status
    }

    static func singleLine(_ text: String) -> String {
        guard text.contains(where: \.isNewline) else { return text }
        return String(text.map { $0.isNewline ? " " : $0 })
    }

    static func monotonicMicroseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1_000
    }

    static func microseconds(_ duration: Duration) -> UInt64 {
        let (seconds, attoseconds) = duration.components
        guard seconds >= 0 else { return 0 }
        return UInt64(seconds) * 1_000_000 + UInt64(attoseconds / 1_000_000_000_000)
    }
}
