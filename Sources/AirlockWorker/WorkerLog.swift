import Glibc

/// Diagnostics on standard error, which the supervisor reads and logs line by line.
enum WorkerLog {
    /// The plug-in's name once `W_START` has arrived, for every line's prefix.
    nonisolated(unsafe) static var pluginName = ""

    /// Writes one line `airlock-worker[PID] PLUGIN: message` with a single `write`.
    static func write(_ message: String) {
        var line = "airlock-worker[\(getpid())]"
        if !pluginName.isEmpty { line += " \(pluginName)" }
        line += ": " + message + "\n"
        line.withUTF8 { bytes in
            _ = Glibc.write(2, bytes.baseAddress, bytes.count)
        }
    }
}
