import AirlockClient
import Glibc

/// ANSI styling, used only when standard output is a terminal.
struct TextStyle {
    var colors: Bool

    static var standardOutputIsTerminal: Bool { isatty(1) == 1 && environmentValue("NO_COLOR") == nil }

    func bold(_ text: String) -> String { colors ? "\u{1B}[1m\(text)\u{1B}[0m" : text }

    /// The `●` bullet, coloured by state: green running, red failed or quarantined, yellow
    /// starting or stopping, plain otherwise.
    func bullet(for state: String?) -> String {
        guard colors else { return "●" }
        switch state {
        case "running": return "\u{1B}[32m●\u{1B}[0m"
        case "failed", "quarantined": return "\u{1B}[31m●\u{1B}[0m"
        case "starting", "stopping": return "\u{1B}[33m●\u{1B}[0m"
        default: return "●"
        }
    }
}

private func environmentValue(_ name: String) -> String? {
    getenv(name).map { String(cString: $0) }
}

/// Renders status and plug-in lists for people, in the spirit of `systemctl status`.
enum StatusRenderer {
    /// The supervisor's header, then one block per worker.
    static func render(_ status: StatusReport, style: TextStyle) -> String {
        var out = ""
        let supervisor = status.supervisor
        out += "\(style.bullet(for: "running")) \(style.bold("airlockd"))"
        if let version = supervisor?.version { out += " \(version)" }
        out += "\n"
        out += field("PID", supervisor?.pid.map(String.init))
        out += field("Uptime", supervisor?.uptimeSeconds.map(duration))
        out += field("Socket", supervisor?.socket)
        out += field("Connections", supervisor?.connections.map { connections in
            guard let rings = supervisor?.resultRings, rings > 0 else { return String(connections) }
            return "\(connections) (\(rings) with a result ring, \(bytes(UInt64(supervisor?.resultRingBytes ?? 0))))"
        })
        out += field("Config", supervisor?.configuration)
        if status.workers.isEmpty {
            out += "\nNo workers.\n"
        }
        for worker in status.workers {
            out += "\n" + render(worker, detailed: false, style: style)
        }
        return out
    }

    /// One worker's block; `detailed` adds its recent failures.
    static func render(_ worker: StatusReport.Worker, detailed: Bool, style: TextStyle) -> String {
        var out = "\(style.bullet(for: worker.state)) \(style.bold(worker.plugin)) — \(worker.state ?? "unknown")\n"
        out += field("Library", worker.library)
        var process: [String] = []
        if let pid = worker.pid, pid > 0 { process.append("pid \(pid)") } else { process.append("no process") }
        if let uptime = worker.uptimeSeconds, worker.pid ?? 0 > 0 { process.append("up \(duration(uptime))") }
        if let restarts = worker.restarts { process.append(restarts == 1 ? "1 restart" : "\(restarts) restarts") }
        out += field("Process", process.joined(separator: ", "))
        var activity: [String] = []
        if let shells = worker.shells { activity.append(count(shells, "shell")) }
        if let commands = worker.commands { activity.append(count(commands, "command")) }
        if let inFlight = worker.operationsInFlight { activity.append("\(inFlight) in flight") }
        out += field("Activity", activity.isEmpty ? nil : activity.joined(separator: ", "))
        if worker.latencyP50Us != nil || worker.latencyP99Us != nil {
            out += field("Latency", "p50 \(microseconds(worker.latencyP50Us)), p99 \(microseconds(worker.latencyP99Us))")
        }
        var resources: [String] = []
        if let rss = worker.rssBytes { resources.append("\(bytes(rss)) resident") }
        if let cpu = worker.cpuSeconds { resources.append("\(decimal(cpu, places: 2)) s CPU") }
        if let threads = worker.threads { resources.append(count(threads, "thread")) }
        if let fds = worker.fds { resources.append("\(fds) fds") }
        out += field("Resources", resources.isEmpty ? nil : resources.joined(separator: ", "))
        if let sandbox = worker.sandbox, !sandbox.isEmpty {
            out += field("Sandbox", sandbox.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        }
        if let until = worker.quarantinedUntil {
            out += field("Quarantine", "\(duration(until)) left")
        }
        if let left = worker.threadsLeftAfterShutdown, left > 0 {
            out += field("Shutdown", "\(count(left, "plug-in thread")) still running after Shutdown")
        }
        out += field("Last exit", worker.lastExit)
        let failures = worker.recentFailures ?? []
        if detailed {
            if !failures.isEmpty {
                out += "\n  Recent failures:\n"
                for failure in failures {
                    out += "    \(failure.time ?? "-")  \(failure.message ?? "")\n"
                }
            }
        } else if !failures.isEmpty {
            out += field("Failures", "\(failures.count) recent (airlockctl status \(worker.plugin))")
        }
        return out
    }

    /// The plug-in list as a table.
    static func render(_ plugins: [PluginInfo]) -> String {
        if plugins.isEmpty { return "No plug-ins registered.\n" }
        var rows = [["NAME", "ENABLED", "AUTORESTART", "LIBRARY", "RESOURCE URIS"]]
        for plugin in plugins {
            rows.append([
                plugin.name, yesNo(plugin.enabled), yesNo(plugin.autoRestart), plugin.library ?? "-",
                (plugin.resourceUris ?? []).joined(separator: " "),
            ])
        }
        return table(rows)
    }

    // MARK: - Formatting

    private static let labelWidth = 12

    private static func field(_ label: String, _ value: String?) -> String {
        guard let value, !value.isEmpty else { return "" }
        let padding = String(repeating: " ", count: max(0, labelWidth - label.count))
        return "\(padding)\(label): \(value)\n"
    }

    static func table(_ rows: [[String]]) -> String {
        var widths: [Int] = []
        for row in rows {
            for (index, cell) in row.enumerated() {
                if index >= widths.count { widths.append(0) }
                widths[index] = max(widths[index], cell.count)
            }
        }
        var out = ""
        for row in rows {
            var line = ""
            for (index, cell) in row.enumerated() {
                if index == row.count - 1 {
                    line += cell
                } else {
                    line += cell + String(repeating: " ", count: widths[index] - cell.count + 2)
                }
            }
            while line.hasSuffix(" ") { line.removeLast() }
            out += line + "\n"
        }
        return out
    }

    private static func yesNo(_ value: Bool?) -> String {
        value.map { $0 ? "yes" : "no" } ?? "-"
    }

    private static func count(_ value: Int, _ noun: String) -> String {
        value == 1 ? "1 \(noun)" : "\(value) \(noun)s"
    }

    /// `1h 02m 03s`, `4m 05s`, `1.2s`.
    static func duration(_ seconds: Double) -> String {
        if seconds < 60 { return decimal(seconds, places: 1) + "s" }
        let total = Int(seconds)
        let (days, hours, minutes, secs) = (total / 86_400, total / 3600 % 24, total / 60 % 60, total % 60)
        if days > 0 { return "\(days)d \(hours)h \(twoDigits(minutes))m" }
        if hours > 0 { return "\(hours)h \(twoDigits(minutes))m \(twoDigits(secs))s" }
        return "\(minutes)m \(twoDigits(secs))s"
    }

    /// `512 B`, `1.2 KiB`, `3.4 MiB`, `1.0 GiB`.
    static func bytes(_ value: UInt64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var amount = Double(value)
        var unit = 0
        while amount >= 1024 && unit < units.count - 1 {
            amount /= 1024
            unit += 1
        }
        return unit == 0 ? "\(value) B" : "\(decimal(amount, places: 1)) \(units[unit])"
    }

    private static func microseconds(_ value: Double?) -> String {
        guard let value else { return "-" }
        return "\(decimal(value, places: value < 10 ? 1 : 0)) µs"
    }

    private static func twoDigits(_ value: Int) -> String {
        value < 10 ? "0\(value)" : "\(value)"
    }

    /// `value` with exactly `places` decimals (no Foundation formatting).
    static func decimal(_ value: Double, places: Int) -> String {
        var scale = 1.0
        for _ in 0..<places { scale *= 10 }
        let scaled = (value * scale).rounded()
        guard scaled.isFinite, abs(scaled) < 1e15 else { return "\(value)" }
        let integer = Int64(scaled)
        let sign = integer < 0 ? "-" : ""
        let magnitude = integer.magnitude
        let whole = magnitude / UInt64(scale)
        if places == 0 { return "\(sign)\(whole)" }
        var fraction = String(magnitude % UInt64(scale))
        while fraction.count < places { fraction = "0" + fraction }
        return "\(sign)\(whole).\(fraction)"
    }
}
