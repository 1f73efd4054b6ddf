import Glibc

/// Resource use of a process, read from `/proc` (for status reports).
public struct ProcessStatistics: Sendable, Hashable {
    /// The process id.
    public var pid: pid_t
    /// Resident set size in bytes (`VmRSS` of `/proc/PID/status`).
    public var residentBytes: UInt64
    /// The number of threads.
    public var threads: Int
    /// The number of open descriptors (entries of `/proc/PID/fd`); `nil` when not readable
    /// (another user's process).
    public var openFiles: Int?
    /// CPU time spent in user mode, in nanoseconds.
    public var userCPUNanoseconds: UInt64
    /// CPU time spent in the kernel on the process's behalf, in nanoseconds.
    public var systemCPUNanoseconds: UInt64
    /// When the process started, in nanoseconds after boot (`CLOCK_BOOTTIME` scale).
    public var startNanosecondsSinceBoot: UInt64
    /// Page faults served without reading from disk (`minflt`): each the kernel mapping a
    /// page the process touched for the first time, or again after giving it back.
    public var minorFaults: UInt64 = 0

    /// User plus system CPU time in nanoseconds.
    public var cpuNanoseconds: UInt64 { userCPUNanoseconds + systemCPUNanoseconds }

    /// Reads the statistics of process `pid` (`ESRCH`-like `ENOENT` when it is gone).
    public static func read(pid: pid_t) throws(SystemCallError) -> ProcessStatistics {
        let stat = try Posix.readFile("/proc/\(pid)/stat", limit: 4096)
        guard let close = stat.lastIndex(of: UInt8(ascii: ")")) else {
            throw SystemCallError(call: "parse(/proc/\(pid)/stat)", errno: .invalidArgument)
        }
        // Fields after "pid (comm)", numbered from 3 (state).
        let fields = stat[(close + 1)...].split(separator: UInt8(ascii: " ")).map { String(decoding: $0, as: UTF8.self) }
        func field(_ number: Int) -> UInt64 {
            let index = number - 3
            return index < fields.count ? UInt64(fields[index].trimmingNewline) ?? 0 : 0
        }
        let ticks = UInt64(Swift.max(sysconf(Int32(_SC_CLK_TCK)), 1))
        let nanosecondsPerTick = 1_000_000_000 / ticks

        var resident: UInt64 = 0
        let status = try Posix.readFile("/proc/\(pid)/status", limit: 1 << 16)
        for line in status.split(separator: UInt8(ascii: "\n")) where line.starts(with: "VmRSS:".utf8) {
            let digits = line.filter { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
            resident = (UInt64(String(decoding: digits, as: UTF8.self)) ?? 0) * 1024
        }

        return ProcessStatistics(
            pid: pid,
            residentBytes: resident,
            threads: Int(field(20)),
            openFiles: Posix.numericEntries(of: "/proc/\(pid)/fd")?.count,
            userCPUNanoseconds: field(14) * nanosecondsPerTick,
            systemCPUNanoseconds: field(15) * nanosecondsPerTick,
            startNanosecondsSinceBoot: field(22) * nanosecondsPerTick,
            minorFaults: field(10)
        )
    }

    /// The number of threads in the calling process.
    public static func threadCount() -> Int {
        Posix.numericEntries(of: "/proc/self/task")?.count ?? 1
    }
}

extension String {
    fileprivate var trimmingNewline: Substring {
        var result = Substring(self)
        while result.last == "\n" { result = result.dropLast() }
        return result
    }
}
