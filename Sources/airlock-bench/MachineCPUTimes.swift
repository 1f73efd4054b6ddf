import AirlockPosix

/// The machine's CPU time by kind (`/proc/stat`, first line, in clock ticks): how much the
/// hypervisor took from this virtual machine (`steal`) while the benchmark ran, which
/// skews every figure that is not compared with a floor of the same moment.
struct MachineCPUTimes {
    var total: UInt64
    var steal: UInt64

    static func read() -> MachineCPUTimes? {
        guard let stat = try? Posix.readFile("/proc/stat", limit: 1 << 16),
              let line = stat.split(separator: UInt8(ascii: "\n")).first, line.starts(with: "cpu ".utf8) else { return nil }
        let fields = line.split(separator: UInt8(ascii: " ")).dropFirst().compactMap { UInt64(String(decoding: $0, as: UTF8.self)) }
        // user nice system idle iowait irq softirq steal (guest time is within user)
        guard fields.count >= 8 else { return nil }
        return MachineCPUTimes(total: fields.prefix(8).reduce(0, +), steal: fields[7])
    }

    /// "N.N % of the CPU time (all CPUs) went to the hypervisor during the run".
    func stealDescription(since start: MachineCPUTimes) -> String {
        let total = self.total &- start.total
        let steal = self.steal &- start.steal
        let percent = total > 0 ? Double(steal) / Double(total) * 100 : 0
        return fixed(percent, 1) + " % of this machine's CPU time went to other guests of its host during the run (steal; every figure not compared with a floor of the same moment moves with it)"
    }
}
