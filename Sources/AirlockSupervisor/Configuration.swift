import AirlockSandbox
import Foundation

/// The supervisor's configuration: daemon settings and the registered plug-ins.
///
/// Read from a JSON file (comments and trailing commas allowed) whose keys mirror
/// WinRM's plug-in registration names, plus one plug-in object per `*.json` file in
/// the drop-in folder `PluginDirectory`, plus `--plugin NAME=LIBRARY` arguments.
public struct SupervisorConfiguration: Sendable, Equatable {
    /// Where clients connect.
    public var socketPath: String
    /// Permission bits of the socket file (when airlockd creates it).
    public var socketMode: UInt32 = 0o660
    /// Group owning the socket file, or nil for the daemon's group.
    public var socketGroup: String?
    /// Parent of each plug-in's writable state folder.
    public var stateDirectory: String
    /// Drop-in folder of plug-in files, or nil.
    public var pluginDirectory: String?
    /// The `airlock-worker` executable.
    public var workerExecutable: String
    /// Maximum frame size in bytes (`MaxEnvelopeSizekb` × 1024).
    public var maxFrameSize: Int = 500 * 1024
    /// The largest result ring a client may offer (`MaxResultRingkb` × 1024; 0: rings are
    /// refused, and results always travel through the socket). PROTOCOL.md §5.6. It bounds
    /// the memory airlockd writes into per connection: a ring's pages are allocated (and
    /// charged to airlockd) as results fill them, and freed when the connection closes.
    public var maxResultRingBytes: Int = 4 << 20
    /// How long a stop may take before workers are killed.
    public var shutdownTimeoutMs: UInt32 = 10_000
    /// Users allowed to administer (restart, stop, reload, see every shell).
    public var admins: [String] = ["root"]
    /// Peers (user names or numeric uids) whose `ASSERT_IDENTITY` is accepted: gateways
    /// such as `airlock-wsman` that authenticate their own users. Empty: nobody.
    public var trustedGateways: [String] = []
    /// Maximum client connections in all, and per user.
    public var maxConnections: Int = 4096
    public var maxConnectionsPerUser: Int = 1024
    /// The registered plug-ins, in order.
    public var plugins: [PluginConfiguration]
    /// Where this configuration came from, for status.
    public var source: String

    public init(socketPath: String, stateDirectory: String, pluginDirectory: String? = nil, workerExecutable: String, plugins: [PluginConfiguration], source: String) {
        self.socketPath = socketPath
        self.stateDirectory = stateDirectory
        self.pluginDirectory = pluginDirectory
        self.workerExecutable = workerExecutable
        self.plugins = plugins
        self.source = source
    }
}

/// One plug-in's registration (WinRM's settings that apply on Linux, plus Airlock's).
public struct PluginConfiguration: Sendable, Equatable {
    public struct Resource: Sendable, Equatable {
        public var uri: String
        public var exactMatch: Bool
    }

    /// WinRM's quota settings, with WinRM's defaults.
    public struct Quotas: Sendable, Equatable {
        public var maxShells = 25
        public var maxShellsPerUser = 5
        public var maxConcurrentUsers = 5
        public var maxConcurrentOperationsPerUser = 15
        public var maxConcurrentOperations = 1500
        public var maxConcurrentCommandsPerShell = 15
        public var maxMemoryPerShellMB = 1024
        public var idleTimeoutMs: UInt32 = 180_000
        public var maxProcessesPerShell = 15
    }

    public var name: String
    public var library: String
    public var resources: [Resource]
    /// Passed to `WSManPluginStartup` as `extraInfo`.
    public var initializationParameters: String?
    public var enabled = true
    public var autoRestart = false
    /// 0 = no idle shutdown.
    public var processIdleTimeoutSec: UInt32 = 0
    public var operationTimeoutMs: UInt32 = 60_000
    /// Grace between a cancel and recycling the worker.
    public var cancelGraceMs: UInt32 = 5_000
    public var dropOutput = false
    public var runAsUser: String?
    public var runAsGroup: String?
    /// Users and groups allowed to use the plug-in; `*` means anyone who can reach the socket.
    public var allowedUsers: [String] = ["*"]
    public var allowedGroups: [String] = []
    public var quotas = Quotas()
    /// Crash-loop limit: more than `restartBurst` crashes within `restartIntervalSec` quarantines the plug-in.
    public var restartBurst = 5
    public var restartIntervalSec: UInt32 = 60
    public var sandbox: SandboxSettings = SandboxSettings()

    public init(name: String, library: String, resources: [Resource] = []) {
        self.name = name
        self.library = library
        self.resources = resources.isEmpty
            ? [Resource(uri: "http://schemas.airlock.dev/plugins/\(name)", exactMatch: false)] : resources
    }
}

/// The per-plug-in sandbox profile as configured; every layer is on unless turned off.
public struct SandboxSettings: Sendable, Equatable {
    public var userNamespace = true
    public var mountNamespace = true
    public var pidNamespace = true
    public var network = false
    public var ipcNamespace = true
    public var utsNamespace = true
    public var landlock = true
    public var seccomp = true
    public var resourceLimits = true
    public var memoryMB: UInt64 = 1024
    public var maxTasks: UInt32 = 64
    public var maxOpenFiles: UInt32 = 1024
    public var readPaths: [String] = []
    public var writePaths: [String] = []

    /// Every layer off (for measurements and trusted plug-ins).
    public static var disabled: SandboxSettings {
        var s = SandboxSettings()
        s.userNamespace = false; s.mountNamespace = false; s.pidNamespace = false; s.network = true
        s.ipcNamespace = false; s.utsNamespace = false; s.landlock = false; s.seccomp = false; s.resourceLimits = false
        return s
    }

    var layers: SandboxLayers {
        var layers: SandboxLayers = [.noNewPrivileges]
        if userNamespace { layers.insert(.userNamespace) }
        if mountNamespace { layers.insert(.mountNamespace) }
        if pidNamespace { layers.insert(.pidNamespace) }
        if !network { layers.insert(.networkNamespace) }
        if ipcNamespace { layers.insert(.ipcNamespace) }
        if utsNamespace { layers.insert(.utsNamespace) }
        if landlock { layers.insert(.landlock) }
        if seccomp { layers.insert(.seccomp) }
        if resourceLimits { layers.insert(.resourceLimits) }
        return layers
    }
}

/// A configuration that cannot be used, with what to fix.
public struct ConfigurationError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

// MARK: - Loading

extension SupervisorConfiguration {
    /// Loads `path` and its drop-in folder. Throws a ``ConfigurationError`` naming the
    /// file and the problem.
    public static func load(path: String, defaults: SupervisorConfiguration) throws -> SupervisorConfiguration {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigurationError("cannot read configuration file \(path): \(String(cString: strerror(errno)))")
        }
        var config = defaults
        config.source = path
        let file: FileModel
        do {
            file = try makeDecoder().decode(FileModel.self, from: data)
        } catch {
            throw ConfigurationError("configuration file \(path) is invalid: \(describe(error))")
        }
        if let v = file.Socket { config.socketPath = v }
        if let v = file.SocketMode {
            guard let mode = UInt32(v, radix: 8), mode <= 0o777 else {
                throw ConfigurationError("configuration file \(path): SocketMode \"\(v)\" is not an octal mode such as \"0660\"")
            }
            config.socketMode = mode
        }
        if let v = file.SocketGroup { config.socketGroup = v }
        if let v = file.StateDirectory { config.stateDirectory = v }
        if let v = file.PluginDirectory { config.pluginDirectory = v }
        if let v = file.WorkerExecutable { config.workerExecutable = v }
        if let v = file.MaxEnvelopeSizekb {
            guard (64...16_384).contains(v) else {
                throw ConfigurationError("configuration file \(path): MaxEnvelopeSizekb \(v) must be between 64 and 16384")
            }
            config.maxFrameSize = v * 1024
        }
        if let v = file.MaxResultRingkb {
            guard v == 0 || (64...1_048_576).contains(v) else {
                throw ConfigurationError("configuration file \(path): MaxResultRingkb \(v) must be 0 (no result rings) or between 64 and 1048576")
            }
            config.maxResultRingBytes = v * 1024
        }
        if let v = file.ShutdownTimeoutMs { config.shutdownTimeoutMs = v }
        if let v = file.Admins { config.admins = v }
        if let v = file.TrustedGateways {
            for entry in v where entry.isEmpty || entry == "*" {
                throw ConfigurationError("configuration file \(path): TrustedGateways entry \"\(entry)\" must name one user or uid (a gateway asserts the identity of the users it authenticated, so trust is given by name, never to everyone)")
            }
            config.trustedGateways = v
        }
        if let v = file.MaxConnections { config.maxConnections = v }
        if let v = file.MaxConnectionsPerUser { config.maxConnectionsPerUser = v }
        var plugins: [PluginConfiguration] = []
        for (index, model) in (file.Plugins ?? []).enumerated() {
            plugins.append(try model.resolve(where: "\(path): Plugins[\(index)]"))
        }
        if let dir = config.pluginDirectory {
            let entries = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
            for entry in entries.sorted() where entry.hasSuffix(".json") {
                let file = dir + "/" + entry
                guard let data = FileManager.default.contents(atPath: file) else {
                    throw ConfigurationError("cannot read plug-in file \(file)")
                }
                do {
                    let model = try makeDecoder().decode(PluginModel.self, from: data)
                    plugins.append(try model.resolve(where: file))
                } catch let error as ConfigurationError {
                    throw error
                } catch {
                    throw ConfigurationError("plug-in file \(file) is invalid: \(describe(error))")
                }
            }
        }
        config.plugins = plugins + defaults.plugins
        try config.validate()
        return config
    }

    /// Checks names, paths and URIs; the first problem found is thrown.
    public func validate() throws {
        var names = Set<String>()
        var uris = [String: String]()
        for plugin in plugins {
            guard !plugin.name.isEmpty, plugin.name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." }) else {
                throw ConfigurationError("plug-in name \"\(plugin.name)\" is invalid: use letters, digits, '-', '_' or '.'")
            }
            guard names.insert(plugin.name).inserted else {
                throw ConfigurationError("plug-in \"\(plugin.name)\" is registered twice; plug-in names must be unique")
            }
            guard plugin.library.hasPrefix("/") else {
                throw ConfigurationError("plug-in \"\(plugin.name)\": Filename \"\(plugin.library)\" must be an absolute path")
            }
            for resource in plugin.resources {
                if let other = uris[resource.uri] {
                    throw ConfigurationError("resource URI \(resource.uri) is registered by both \"\(other)\" and \"\(plugin.name)\"")
                }
                uris[resource.uri] = plugin.name
            }
        }
        guard socketPath.hasPrefix("/") else {
            throw ConfigurationError("Socket \"\(socketPath)\" must be an absolute path")
        }
    }

    static func makeDecoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.allowsJSON5 = true
        return decoder
    }

    static func describe(_ error: Error) -> String {
        switch error {
        case DecodingError.typeMismatch(let type, let context):
            return "\(path(context)): expected \(type)"
        case DecodingError.valueNotFound(_, let context):
            return "\(path(context)): value missing"
        case DecodingError.keyNotFound(let key, let context):
            return "\(path(context)): required key \"\(key.stringValue)\" missing"
        case DecodingError.dataCorrupted(let context):
            let underlying = (context.underlyingError as NSError?)?.userInfo[NSDebugDescriptionErrorKey] as? String
            return "\(path(context)): \(underlying ?? context.debugDescription)"
        default:
            return String(describing: error)
        }
    }

    private static func path(_ context: DecodingError.Context) -> String {
        let p = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
        return p.isEmpty ? "at the top level" : "at \(p)"
    }
}

/// Rejects keys it does not know, so a misspelt setting is an error rather than ignored.
private struct StrictKeys: Decodable {
    init(from decoder: Decoder, known: Set<String>, what: String) throws {
        let container = try decoder.container(keyedBy: AnyKey.self)
        for key in container.allKeys where !known.contains(key.stringValue) {
            throw DecodingError.dataCorrupted(.init(
                codingPath: container.codingPath + [key],
                debugDescription: "unknown setting \"\(key.stringValue)\" in \(what); known settings: \(known.sorted().joined(separator: ", "))"))
        }
    }
    init(from decoder: Decoder) throws {}
}

private struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int?
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { self.stringValue = String(intValue); self.intValue = intValue }
}

private struct FileModel: Decodable {
    var Socket: String?
    var SocketMode: String?
    var SocketGroup: String?
    var StateDirectory: String?
    var PluginDirectory: String?
    var WorkerExecutable: String?
    var MaxEnvelopeSizekb: Int?
    var MaxResultRingkb: Int?
    var ShutdownTimeoutMs: UInt32?
    var Admins: [String]?
    var TrustedGateways: [String]?
    var MaxConnections: Int?
    var MaxConnectionsPerUser: Int?
    var Plugins: [PluginModel]?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case Socket, SocketMode, SocketGroup, StateDirectory, PluginDirectory, WorkerExecutable, MaxEnvelopeSizekb, MaxResultRingkb
        case ShutdownTimeoutMs, Admins, TrustedGateways, MaxConnections, MaxConnectionsPerUser, Plugins
    }

    init(from decoder: Decoder) throws {
        _ = try StrictKeys(from: decoder, known: Set(CodingKeys.allCases.map(\.rawValue)), what: "the configuration file")
        let c = try decoder.container(keyedBy: CodingKeys.self)
        Socket = try c.decodeIfPresent(String.self, forKey: .Socket)
        SocketMode = try c.decodeIfPresent(String.self, forKey: .SocketMode)
        SocketGroup = try c.decodeIfPresent(String.self, forKey: .SocketGroup)
        StateDirectory = try c.decodeIfPresent(String.self, forKey: .StateDirectory)
        PluginDirectory = try c.decodeIfPresent(String.self, forKey: .PluginDirectory)
        WorkerExecutable = try c.decodeIfPresent(String.self, forKey: .WorkerExecutable)
        MaxEnvelopeSizekb = try c.decodeIfPresent(Int.self, forKey: .MaxEnvelopeSizekb)
        MaxResultRingkb = try c.decodeIfPresent(Int.self, forKey: .MaxResultRingkb)
        ShutdownTimeoutMs = try c.decodeIfPresent(UInt32.self, forKey: .ShutdownTimeoutMs)
        Admins = try c.decodeIfPresent([String].self, forKey: .Admins)
        TrustedGateways = try c.decodeIfPresent([String].self, forKey: .TrustedGateways)
        MaxConnections = try c.decodeIfPresent(Int.self, forKey: .MaxConnections)
        MaxConnectionsPerUser = try c.decodeIfPresent(Int.self, forKey: .MaxConnectionsPerUser)
        Plugins = try c.decodeIfPresent([PluginModel].self, forKey: .Plugins)
    }
}

private struct ResourceModel: Decodable {
    var ResourceUri: String
    var ExactMatch: Bool?
}

private struct QuotasModel: Decodable {
    var MaxShells: Int?
    var MaxShellsPerUser: Int?
    var MaxConcurrentUsers: Int?
    var MaxConcurrentOperationsPerUser: Int?
    var MaxConcurrentOperations: Int?
    var MaxConcurrentCommandsPerShell: Int?
    var MaxMemoryPerShellMB: Int?
    var IdleTimeoutms: UInt32?
    var MaxIdleTimeoutms: UInt32?
    var MaxProcessesPerShell: Int?
}

private struct RestartLimitModel: Decodable {
    var Burst: Int?
    var IntervalSec: UInt32?
}

private struct SandboxModel: Decodable {
    var UserNamespace: Bool?
    var MountNamespace: Bool?
    var PidNamespace: Bool?
    var Network: Bool?
    var IpcNamespace: Bool?
    var UtsNamespace: Bool?
    var Landlock: Bool?
    var Seccomp: Bool?
    var ResourceLimits: Bool?
    var MemoryMB: UInt64?
    var MaxTasks: UInt32?
    var MaxOpenFiles: UInt32?
    var ReadPaths: [String]?
    var WritePaths: [String]?
}

/// `InitializationParameters`: either the XML text itself or `{"Name": "Value"}` pairs.
private enum InitializationParametersModel: Decodable {
    case text(String)
    case pairs([String: String])
    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let s = try? c.decode(String.self) { self = .text(s) } else { self = .pairs(try c.decode([String: String].self)) }
    }
    var xml: String {
        switch self {
        case .text(let s): return s
        case .pairs(let p):
            let params = p.keys.sorted().map { "<Param Name=\"\(xmlEscape($0))\" Value=\"\(xmlEscape(p[$0]!))\"/>" }.joined()
            return "<InitializationParameters>\(params)</InitializationParameters>"
        }
    }
}

private func xmlEscape(_ s: String) -> String {
    s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "\"", with: "&quot;")
        .replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
}

private struct PluginModel: Decodable {
    var Name: String
    var Filename: String
    var Resources: [ResourceModel]?
    var InitializationParameters: InitializationParametersModel?
    var Enabled: Bool?
    var AutoRestart: Bool?
    var ProcessIdleTimeoutSec: UInt32?
    var OperationTimeoutMs: UInt32?
    var CancelGraceMs: UInt32?
    var OutputBufferingMode: String?
    var RunAsUser: String?
    var RunAsGroup: String?
    var AllowedUsers: [String]?
    var AllowedGroups: [String]?
    var Quotas: QuotasModel?
    var RestartLimit: RestartLimitModel?
    var Sandbox: SandboxModel?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case Name, Filename, Resources, InitializationParameters, Enabled, AutoRestart, ProcessIdleTimeoutSec
        case OperationTimeoutMs, CancelGraceMs, OutputBufferingMode, RunAsUser, RunAsGroup, AllowedUsers, AllowedGroups
        case Quotas, RestartLimit, Sandbox
    }

    init(from decoder: Decoder) throws {
        _ = try StrictKeys(from: decoder, known: Set(CodingKeys.allCases.map(\.rawValue)), what: "a plug-in")
        let c = try decoder.container(keyedBy: CodingKeys.self)
        Name = try c.decode(String.self, forKey: .Name)
        Filename = try c.decode(String.self, forKey: .Filename)
        Resources = try c.decodeIfPresent([ResourceModel].self, forKey: .Resources)
        InitializationParameters = try c.decodeIfPresent(InitializationParametersModel.self, forKey: .InitializationParameters)
        Enabled = try c.decodeIfPresent(Bool.self, forKey: .Enabled)
        AutoRestart = try c.decodeIfPresent(Bool.self, forKey: .AutoRestart)
        ProcessIdleTimeoutSec = try c.decodeIfPresent(UInt32.self, forKey: .ProcessIdleTimeoutSec)
        OperationTimeoutMs = try c.decodeIfPresent(UInt32.self, forKey: .OperationTimeoutMs)
        CancelGraceMs = try c.decodeIfPresent(UInt32.self, forKey: .CancelGraceMs)
        OutputBufferingMode = try c.decodeIfPresent(String.self, forKey: .OutputBufferingMode)
        RunAsUser = try c.decodeIfPresent(String.self, forKey: .RunAsUser)
        RunAsGroup = try c.decodeIfPresent(String.self, forKey: .RunAsGroup)
        AllowedUsers = try c.decodeIfPresent([String].self, forKey: .AllowedUsers)
        AllowedGroups = try c.decodeIfPresent([String].self, forKey: .AllowedGroups)
        Quotas = try c.decodeIfPresent(QuotasModel.self, forKey: .Quotas)
        RestartLimit = try c.decodeIfPresent(RestartLimitModel.self, forKey: .RestartLimit)
        Sandbox = try c.decodeIfPresent(SandboxModel.self, forKey: .Sandbox)
    }

    func resolve(where location: String) throws -> PluginConfiguration {
        var p = PluginConfiguration(
            name: Name, library: Filename,
            resources: (Resources ?? []).map { .init(uri: $0.ResourceUri, exactMatch: $0.ExactMatch ?? false) })
        p.initializationParameters = InitializationParameters?.xml
        if let v = Enabled { p.enabled = v }
        if let v = AutoRestart { p.autoRestart = v }
        if let v = ProcessIdleTimeoutSec { p.processIdleTimeoutSec = v }
        if let v = OperationTimeoutMs { p.operationTimeoutMs = v }
        if let v = CancelGraceMs { p.cancelGraceMs = v }
        if let v = OutputBufferingMode {
            switch v.lowercased() {
            case "block": p.dropOutput = false
            case "drop": p.dropOutput = true
            default: throw ConfigurationError("\(location): OutputBufferingMode \"\(v)\" must be \"Block\" or \"Drop\"")
            }
        }
        p.runAsUser = RunAsUser
        p.runAsGroup = RunAsGroup
        if let v = AllowedUsers { p.allowedUsers = v }
        if let v = AllowedGroups { p.allowedGroups = v }
        if let q = Quotas {
            if let v = q.MaxShells { p.quotas.maxShells = v }
            if let v = q.MaxShellsPerUser { p.quotas.maxShellsPerUser = v }
            if let v = q.MaxConcurrentUsers { p.quotas.maxConcurrentUsers = v }
            if let v = q.MaxConcurrentOperationsPerUser { p.quotas.maxConcurrentOperationsPerUser = v }
            if let v = q.MaxConcurrentOperations { p.quotas.maxConcurrentOperations = v }
            if let v = q.MaxConcurrentCommandsPerShell { p.quotas.maxConcurrentCommandsPerShell = v }
            if let v = q.MaxMemoryPerShellMB { p.quotas.maxMemoryPerShellMB = v; p.sandbox.memoryMB = UInt64(v) }
            if let v = q.IdleTimeoutms { p.quotas.idleTimeoutMs = v }
            if let v = q.MaxProcessesPerShell { p.quotas.maxProcessesPerShell = v }
        }
        if let r = RestartLimit {
            if let v = r.Burst { p.restartBurst = v }
            if let v = r.IntervalSec { p.restartIntervalSec = v }
        }
        if let s = Sandbox {
            if let v = s.UserNamespace { p.sandbox.userNamespace = v }
            if let v = s.MountNamespace { p.sandbox.mountNamespace = v }
            if let v = s.PidNamespace { p.sandbox.pidNamespace = v }
            if let v = s.Network { p.sandbox.network = v }
            if let v = s.IpcNamespace { p.sandbox.ipcNamespace = v }
            if let v = s.UtsNamespace { p.sandbox.utsNamespace = v }
            if let v = s.Landlock { p.sandbox.landlock = v }
            if let v = s.Seccomp { p.sandbox.seccomp = v }
            if let v = s.ResourceLimits { p.sandbox.resourceLimits = v }
            if let v = s.MemoryMB { p.sandbox.memoryMB = v }
            if let v = s.MaxTasks { p.sandbox.maxTasks = v }
            if let v = s.MaxOpenFiles { p.sandbox.maxOpenFiles = v }
            if let v = s.ReadPaths { p.sandbox.readPaths = v }
            if let v = s.WritePaths { p.sandbox.writePaths = v }
        }
        return p
    }
}
