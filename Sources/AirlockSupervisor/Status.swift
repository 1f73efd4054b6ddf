import AirlockPosix
import AirlockProtocol
import AirlockSandbox
import Foundation

/// The JSON documents behind `airlockctl status` and `airlockctl plugins`.
struct StatusDocument: Encodable {
    struct SupervisorInfo: Encodable {
        var pid: Int32
        var version: String
        var uptimeSeconds: Double
        var socket: String
        var connections: Int
        /// Connections with a result ring (PROTOCOL.md §5.6), and the rings' bytes in all.
        var resultRings: Int
        var resultRingBytes: Int
        var shells: Int
        var configuration: String
        var stopping: Bool
        var rssBytes: UInt64?
    }

    struct Failure: Encodable {
        var time: String
        var message: String
    }

    struct Worker: Encodable {
        var plugin: String
        var library: String
        /// 0 when no process is running.
        var pid: Int32
        var state: String
        var uptimeSeconds: Double?
        var restarts: Int
        var lastExit: String?
        var rssBytes: UInt64?
        var cpuSeconds: Double?
        var threads: Int?
        var fds: Int?
        var shells: Int
        var commands: Int
        var operationsInFlight: Int
        var latencyP50Us: UInt32?
        var latencyP99Us: UInt32?
        var sandbox: [String: String]
        var quarantinedUntil: Double?
        var threadsLeftAfterShutdown: UInt32?
        var recentFailures: [Failure]
    }

    struct ShellInfo: Encodable {
        var id: UInt64
        var plugin: String
        var owner: String
        var ownerUID: UInt32
        var commands: [UInt64]
        var state: String
    }

    var supervisor: SupervisorInfo
    var workers: [Worker]
    /// Every shell for administrators; the caller's own shells for everyone else.
    var shells: [ShellInfo]
}

struct PluginDocument: Encodable {
    var name: String
    var library: String
    var resourceUris: [String]
    var enabled: Bool
    var autoRestart: Bool
    var state: String
}

extension Supervisor {
    func statusJSON(plugin filter: String?, for peer: PeerIdentity) -> String {
        let now = SystemClock.monotonicNanoseconds()
        let me = try? ProcessStatistics.read(pid: getpid())
        var workers: [StatusDocument.Worker] = []
        for name in pluginOrder where filter == nil || filter == name {
            guard let plugin = plugins[name] else { continue }
            let stats = plugin.pid != 0 ? try? ProcessStatistics.read(pid: hostProcess(of: plugin.pid)) : nil
            var sandbox: [String: String] = [:]
            for layer in plugin.sandboxReport { sandbox[layer.name] = layer.state }
            if sandbox.isEmpty { sandbox = configuredSandbox(plugin.config.sandbox) }
            var quarantinedUntil: Double?
            if case .quarantined(let until) = plugin.state { quarantinedUntil = Double(until &- now) / 1e9 }
            let commands = plugin.shells.reduce(0) { $0 + (shells[$1]?.commands.count ?? 0) }
            let inFlight = plugin.routes.values.filter(\.awaitsAnswer).count
            workers.append(StatusDocument.Worker(
                plugin: name, library: plugin.config.library, pid: plugin.pid, state: plugin.state.name,
                uptimeSeconds: plugin.pid == 0 ? nil : Double(now &- plugin.startedAt) / 1e9, restarts: plugin.restarts, lastExit: plugin.lastExit,
                rssBytes: stats?.residentBytes, cpuSeconds: stats.map { Double($0.cpuNanoseconds) / 1e9 }, threads: stats?.threads, fds: stats?.openFiles,
                shells: plugin.shells.count, commands: commands, operationsInFlight: inFlight,
                latencyP50Us: plugin.latencyPercentile(0.5), latencyP99Us: plugin.latencyPercentile(0.99),
                sandbox: sandbox, quarantinedUntil: quarantinedUntil, threadsLeftAfterShutdown: plugin.threadsLeftAfterShutdown,
                recentFailures: plugin.recentFailures.map { .init(time: iso8601($0.time), message: $0.message) }))
        }
        let rings = connections.values.compactMap(\.resultRing)
        let document = StatusDocument(
            supervisor: .init(pid: getpid(), version: Self.version, uptimeSeconds: Double(now &- startedAt) / 1e9, socket: config.socketPath,
                              connections: connections.count, resultRings: rings.count, resultRingBytes: rings.reduce(0) { $0 + $1.cursor.size },
                              shells: shells.count, configuration: config.source, stopping: stopping,
                              rssBytes: me?.residentBytes),
            workers: workers,
            shells: shells.values.sorted { $0.id < $1.id }
                .filter { (filter == nil || $0.plugin == filter) && (isAdmin(peer) || $0.ownerPrincipal == peer.principal) }
                .map { shell in
                    let state = shell.closing ? "closing" : !shell.ready ? "creating" : shell.disconnectedUntil != 0 ? "disconnected" : "connected"
                    return .init(id: shell.id, plugin: shell.plugin, owner: shell.ownerName, ownerUID: shell.ownerUID,
                                 commands: shell.commands.keys.sorted(), state: state)
                })
        return encode(document)
    }

    /// The process that hosts the plug-in. With a PID namespace the worker forks: the
    /// supervisor's child waits outside, and the plug-in runs in a child of it inside the
    /// namespace (not its init, which only reaps).
    func hostProcess(of pid: Int32) -> Int32 {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return pid }
        for entry in entries {
            guard let candidate = Int32(entry),
                  let stat = try? Posix.readFile("/proc/\(candidate)/stat", limit: 4096) else { continue }
            // Fields after the command name: state, ppid, ...
            let text = String(decoding: stat, as: UTF8.self)
            guard let close = text.lastIndex(of: ")") else { continue }
            let fields = text[text.index(after: close)...].split(separator: " ")
            guard fields.count > 2, Int32(fields[1]) == pid else { continue }
            let status = (try? Posix.readFile("/proc/\(candidate)/status", limit: 8192)).map { String(decoding: $0, as: UTF8.self) } ?? ""
            let nspid = status.split(separator: "\n").first { $0.hasPrefix("NSpid:") }?.split(separator: "\t").last
            if nspid != "1" { return candidate }
        }
        return pid
    }

    func pluginsJSON() -> String {
        encode(pluginOrder.compactMap { name in
            plugins[name].map {
                PluginDocument(name: name, library: $0.config.library, resourceUris: $0.config.resources.map(\.uri),
                               enabled: $0.config.enabled, autoRestart: $0.config.autoRestart, state: $0.state.name)
            }
        })
    }

    private func configuredSandbox(_ s: SandboxSettings) -> [String: String] {
        func state(_ on: Bool) -> String { on ? "configured" : "off" }
        return [
            "user": state(s.userNamespace), "mount": state(s.mountNamespace), "pid": state(s.pidNamespace),
            "network": state(!s.network), "ipc": state(s.ipcNamespace), "uts": state(s.utsNamespace),
            "landlock": state(s.landlock), "seccomp": state(s.seccomp), "limits": state(s.resourceLimits),
        ]
    }

    private func encode<T: Encodable>(_ value: T) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(value)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }

    private func iso8601(_ seconds: Int64) -> String {
        let formatter = ISO8601DateFormatter()
        return formatter.string(from: Date(timeIntervalSince1970: TimeInterval(seconds)))
    }

    // MARK: - Worker environment

    /// Creates `<StateDirectory>/plugins/<name>`, owned by the worker's user.
    func prepareStateDirectory(_ plugin: PluginRuntime) throws -> String {
        // The parents are traversable (0711) so a worker running as another user reaches
        // its own folder, which only it can read (0700).
        let parent = config.stateDirectory + "/plugins"
        try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o711])
        _ = config.stateDirectory.withCString { chmod($0, 0o711) }
        _ = parent.withCString { chmod($0, 0o711) }
        let directory = parent + "/" + plugin.name
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        if let (uid, gid) = try workerIdentity(plugin) {
            _ = directory.withCString { chown($0, uid, gid) }
            try checkTraversable(Self.realPath(directory), uid: uid, gid: gid, plugin: plugin)
        }
        return Self.realPath(directory)
    }

    /// Fails with a clear message when a folder above the state folder cannot be entered by
    /// the worker's user (a common mistake: a 0700 parent owned by root).
    func checkTraversable(_ path: String, uid: UInt32, gid: UInt32, plugin: PluginRuntime) throws {
        var prefix = ""
        for component in path.split(separator: "/").dropLast() {
            prefix += "/" + component
            var info = stat()
            guard stat(prefix, &info) == 0 else { continue }
            let mode = info.st_mode
            let reachable = info.st_uid == uid ? mode & 0o100 != 0 : info.st_gid == gid ? mode & 0o010 != 0 : mode & 0o001 != 0
            if !reachable {
                let user = UserDatabase.userName(uid: uid) ?? "uid \(uid)"
                throw ConfigurationError("plug-in '\(plugin.name)': its worker runs as \(user) and cannot reach its state folder \(path): \(prefix) has mode \(String(mode & 0o7777, radix: 8)); let others enter it (chmod o+x \(prefix)) or choose another StateDirectory")
            }
        }
    }

    /// The uid and gid the worker runs as: RunAsUser when set; `nobody` when airlockd
    /// runs as root; unchanged otherwise (nil).
    func workerIdentity(_ plugin: PluginRuntime) throws -> (uid: UInt32, gid: UInt32)? {
        guard getuid() == 0 else {
            if plugin.config.runAsUser != nil {
                throw ConfigurationError("plug-in '\(plugin.name)': RunAsUser needs airlockd to run as root")
            }
            return nil
        }
        let name = plugin.config.runAsUser ?? "nobody"
        guard let user = UserDatabase.lookupUser(name: name) else {
            throw ConfigurationError("plug-in '\(plugin.name)': RunAsUser \"\(name)\" does not exist on this system")
        }
        var gid = user.gid
        if let group = plugin.config.runAsGroup {
            guard let found = UserDatabase.lookupGroup(name: group) else {
                throw ConfigurationError("plug-in '\(plugin.name)': RunAsGroup \"\(group)\" does not exist on this system")
            }
            gid = found
        }
        return (user.uid, gid)
    }

    func sandboxProfile(_ plugin: PluginRuntime, stateDirectory: String, cgroupPath: String) throws -> [UInt8] {
        let settings = plugin.config.sandbox
        var profile = SandboxProfile()
        profile.layers = settings.layers
        if let identity = try workerIdentity(plugin) {
            profile.runAsUID = identity.uid
            profile.runAsGID = identity.gid
            // The worker sets these groups without looking the user up itself (startup time).
            profile.supplementaryGroups = UserDatabase.groupList(user: plugin.config.runAsUser ?? "nobody", gid: identity.gid)
        }
        profile.memoryBytes = settings.memoryMB * 1024 * 1024
        profile.maxTasks = settings.maxTasks
        profile.maxOpenFiles = settings.maxOpenFiles
        profile.allowNetwork = settings.network
        profile.stateDirectory = stateDirectory
        profile.readPaths = settings.readPaths
        profile.writePaths = settings.writePaths
        profile.cgroupPath = cgroupPath
        return profile.encoded()
    }
}

/// Limits how many lines of a plug-in's own output are logged per second.
struct OutputRateLimiter {
    var linesPerSecond = 50
    private var windows: [String: (start: UInt64, count: Int, suppressed: Int)] = [:]

    mutating func allow(_ key: String, now: UInt64) -> Bool {
        var window = windows[key] ?? (now, 0, 0)
        if now &- window.start >= 1_000_000_000 {
            window.start = now
            window.count = 0
        }
        window.count += 1
        let allowed = window.count <= linesPerSecond
        if !allowed { window.suppressed += 1 }
        windows[key] = window
        return allowed
    }

    mutating func takeSuppressed(_ key: String) -> Int? {
        guard var window = windows[key], window.suppressed > 0, window.count == 1 else { return nil }
        let suppressed = window.suppressed
        window.suppressed = 0
        windows[key] = window
        return suppressed
    }
}
