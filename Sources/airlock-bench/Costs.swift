import AirlockPosix
import Glibc

/// Context switches and CPU time of one process, summed over its threads, read from
/// `/proc` before and after a measured loop to give costs per operation.
struct ProcessCosts: Sendable {
    var voluntarySwitches: UInt64 = 0
    var involuntarySwitches: UInt64 = 0
    var cpuNanoseconds: UInt64 = 0
    /// Minor page faults (pages mapped on first touch, or again after malloc gave them back).
    var minorFaults: UInt64 = 0

    /// The counters of `pid` now (zeros for a process that is gone).
    static func read(pid: pid_t) -> ProcessCosts {
        var costs = ProcessCosts()
        let statistics = try? ProcessStatistics.read(pid: pid)
        costs.cpuNanoseconds = statistics?.cpuNanoseconds ?? 0
        costs.minorFaults = statistics?.minorFaults ?? 0
        for name in Posix.numericEntries(of: "/proc/\(pid)/task") ?? [] {
            guard let status = try? Posix.readFile("/proc/\(pid)/task/\(name)/status", limit: 1 << 16) else { continue }
            for line in status.split(separator: UInt8(ascii: "\n")) {
                if line.starts(with: "voluntary_ctxt_switches:".utf8) {
                    costs.voluntarySwitches += number(in: line)
                } else if line.starts(with: "nonvoluntary_ctxt_switches:".utf8) {
                    costs.involuntarySwitches += number(in: line)
                }
            }
        }
        return costs
    }

    private static func number(in line: ArraySlice<UInt8>) -> UInt64 {
        UInt64(String(decoding: line.filter { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }, as: UTF8.self)) ?? 0
    }

    static func - (after: ProcessCosts, before: ProcessCosts) -> ProcessCosts {
        // Saturating: a thread that ended in between takes its counts with it.
        func delta(_ a: UInt64, _ b: UInt64) -> UInt64 { a > b ? a - b : 0 }
        return ProcessCosts(
            voluntarySwitches: delta(after.voluntarySwitches, before.voluntarySwitches),
            involuntarySwitches: delta(after.involuntarySwitches, before.involuntarySwitches),
            cpuNanoseconds: delta(after.cpuNanoseconds, before.cpuNanoseconds),
            minorFaults: delta(after.minorFaults, before.minorFaults))
    }
}

/// Per-operation costs of a measured loop, for the benchmark itself (the client),
/// airlockd and its workers.
struct OperationCosts: Sendable {
    var operations: Int
    var client: ProcessCosts
    var supervisor: ProcessCosts
    var workers: ProcessCosts

    /// Snapshots of the three parties.
    struct Snapshot {
        var client: ProcessCosts
        var supervisor: ProcessCosts
        var workers: ProcessCosts

        static func take(daemonPID: pid_t, workerPIDs: [pid_t]) -> Snapshot {
            var workers = ProcessCosts()
            for pid in workerPIDs {
                let costs = ProcessCosts.read(pid: pid)
                workers.voluntarySwitches += costs.voluntarySwitches
                workers.involuntarySwitches += costs.involuntarySwitches
                workers.cpuNanoseconds += costs.cpuNanoseconds
                workers.minorFaults += costs.minorFaults
            }
            return Snapshot(client: ProcessCosts.read(pid: getpid()), supervisor: ProcessCosts.read(pid: daemonPID), workers: workers)
        }
    }

    init(operations: Int, from before: Snapshot, to after: Snapshot) {
        self.operations = operations
        client = after.client - before.client
        supervisor = after.supervisor - before.supervisor
        workers = after.workers - before.workers
    }

    static func + (left: OperationCosts, right: OperationCosts) -> OperationCosts {
        func sum(_ a: ProcessCosts, _ b: ProcessCosts) -> ProcessCosts {
            ProcessCosts(
                voluntarySwitches: a.voluntarySwitches &+ b.voluntarySwitches,
                involuntarySwitches: a.involuntarySwitches &+ b.involuntarySwitches,
                cpuNanoseconds: a.cpuNanoseconds &+ b.cpuNanoseconds,
                minorFaults: a.minorFaults &+ b.minorFaults)
        }
        var result = left
        result.operations += right.operations
        result.client = sum(left.client, right.client)
        result.supervisor = sum(left.supervisor, right.supervisor)
        result.workers = sum(left.workers, right.workers)
        return result
    }

    /// Context switches (voluntary + involuntary) per operation.
    func switchesPerOperation(_ costs: ProcessCosts) -> Double {
        operations > 0 ? Double(costs.voluntarySwitches + costs.involuntarySwitches) / Double(operations) : 0
    }

    /// CPU microseconds per operation (tick resolution: meaningful over thousands of operations).
    func cpuMicrosecondsPerOperation(_ costs: ProcessCosts) -> Double {
        operations > 0 ? Double(costs.cpuNanoseconds) / 1000 / Double(operations) : 0
    }
}
