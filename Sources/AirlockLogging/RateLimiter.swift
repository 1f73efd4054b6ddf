import Synchronization

/// Limits how many lines per key (a plug-in's name) are logged: at most `burst` lines in
/// each window of `interval`, counting the ones dropped so they can be reported.
///
/// The supervisor logs each line of a plug-in's stdout and stderr through it, so a plug-in
/// printing in a loop cannot flood the journal (the same scheme as journald's
/// `RateLimitBurst=`/`RateLimitIntervalSec=`, but per plug-in):
///
/// ```swift
/// switch limiter.admit(pluginName) {
/// case .log(let suppressed):
///     if suppressed > 0 { logger.warning("suppressed \(suppressed) output lines", metadata: ["plugin": "\(pluginName)"]) }
///     logger.info("\(line)", metadata: ["plugin": "\(pluginName)", "stream": "stderr"])
/// case .suppress:
///     break
/// }
/// ```
/// Call ``expire(at:)`` now and then (e.g. every `interval`) to report windows that ended with
/// lines dropped and no line since, and ``remove(_:)`` when a plug-in stops.
///
/// Time is passed in, so tests drive it without sleeping. Thread-safe.
public final class RateLimiter: Sendable {
    /// What to do with one line.
    public enum Decision: Sendable, Equatable {
        /// Log the line. `suppressedBefore` lines of this key were dropped in the window that
        /// just ended: report that number first when it is not zero.
        case log(suppressedBefore: Int)
        /// Drop the line; it is counted.
        case suppress
    }

    /// Lines of one key dropped in a window that has ended.
    public struct Suppression: Sendable, Equatable {
        public let key: String
        public let count: Int

        public init(key: String, count: Int) {
            self.key = key
            self.count = count
        }
    }

    private struct Window {
        var start: ContinuousClock.Instant
        var logged: Int
        var suppressed: Int
    }

    /// Lines allowed per key in one window.
    public let burst: Int
    /// The length of a window; a key's window starts at its first line.
    public let interval: Duration
    private let windows = Mutex<[String: Window]>([:])

    /// - Parameters:
    ///   - burst: lines allowed per key per window (at least 1).
    ///   - interval: the window length (greater than zero).
    public init(burst: Int, interval: Duration) {
        precondition(burst >= 1, "RateLimiter burst must be at least 1")
        precondition(interval > .zero, "RateLimiter interval must be positive")
        self.burst = burst
        self.interval = interval
    }

    /// Decides whether a line of `key` seen at `now` is logged.
    public func admit(_ key: String, at now: ContinuousClock.Instant = .now) -> Decision {
        windows.withLock { windows in
            guard var window = windows[key], now < window.start + interval else {
                let suppressedBefore = windows[key]?.suppressed ?? 0
                windows[key] = Window(start: now, logged: 1, suppressed: 0)
                return .log(suppressedBefore: suppressedBefore)
            }
            if window.logged < burst {
                window.logged += 1
                windows[key] = window
                return .log(suppressedBefore: 0)
            }
            window.suppressed += 1
            windows[key] = window
            return .suppress
        }
    }

    /// Ends every window that is over at `now`, forgetting its key, and returns those that
    /// dropped lines, sorted by key.
    public func expire(at now: ContinuousClock.Instant = .now) -> [Suppression] {
        windows.withLock { windows in
            var ended: [Suppression] = []
            for (key, window) in windows where now >= window.start + interval {
                if window.suppressed > 0 { ended.append(Suppression(key: key, count: window.suppressed)) }
                windows[key] = nil
            }
            return ended.sorted { $0.key < $1.key }
        }
    }

    /// Forgets `key` (its plug-in stopped) and returns how many of its lines the current
    /// window dropped.
    @discardableResult
    public func remove(_ key: String) -> Int {
        windows.withLock { windows in
            windows.removeValue(forKey: key)?.suppressed ?? 0
        }
    }
}
