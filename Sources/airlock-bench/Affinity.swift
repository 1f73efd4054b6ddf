import AirlockPosix
import CAirlockShims
import Glibc

/// CPU affinity of this whole process. Children (airlockd, and through it the worker; the
/// ping-pong partner) inherit the affinity of the thread that spawns them, and threads
/// inherit it from the thread that creates them, so pinning every thread of the benchmark
/// before it starts anything pins everything measured.
enum CPUAffinity {
    /// Pins every thread of this process to `cpu` alone (`cpu` < 0: every CPU).
    static func setProcess(cpu: Int32) throws(SystemCallError) {
        // Threads may appear while we walk the list; a second pass catches them.
        for _ in 0..<2 {
            for tid in threadIDs() {
                if airlock_set_cpu_affinity(tid, cpu) != 0 && errno != ESRCH {
                    throw SystemCallError(call: "sched_setaffinity(\(tid), cpu \(cpu))")
                }
            }
        }
    }

    /// The number of CPUs the calling thread may run on.
    static func allowedCount() -> Int {
        Int(max(airlock_cpu_affinity_count(0), 1))
    }

    /// The number of CPUs the calling thread may run on, or nil when `pid` is gone.
    static func allowedCount(pid: pid_t) -> Int? {
        let count = airlock_cpu_affinity_count(pid)
        return count < 0 ? nil : Int(count)
    }

    /// The CPUs configured on this machine.
    static var configuredCPUs: Int { Int(max(sysconf(Int32(_SC_NPROCESSORS_CONF)), 1)) }

    /// The ids of this process's threads (`/proc/self/task`).
    static func threadIDs() -> [pid_t] {
        Posix.numericEntries(of: "/proc/self/task") ?? [ProcessControl.threadID()]
    }
}
