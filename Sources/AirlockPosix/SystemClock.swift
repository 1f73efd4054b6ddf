import Glibc

/// The system clocks (`clock_gettime`).
public enum SystemClock {
    /// `CLOCK_MONOTONIC` in nanoseconds: for deadlines and durations; never jumps.
    @inline(__always)
    public static func monotonicNanoseconds() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) &* 1_000_000_000 &+ UInt64(time.tv_nsec)
    }

    /// `CLOCK_REALTIME` in nanoseconds since the Unix epoch: for timestamps shown to people.
    @inline(__always)
    public static func realtimeNanoseconds() -> Int64 {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        return Int64(time.tv_sec) &* 1_000_000_000 &+ Int64(time.tv_nsec)
    }

    /// `CLOCK_REALTIME` as seconds and nanoseconds since the Unix epoch.
    public static func realtime() -> (seconds: Int64, nanoseconds: Int32) {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        return (Int64(time.tv_sec), Int32(time.tv_nsec))
    }
}
