import Foundation

/// The supervisor's status (`STATUS`), decoded leniently: every field the supervisor may
/// omit is optional, and unknown fields are ignored.
public struct StatusReport: Sendable, Decodable, Equatable {
    /// The supervisor process.
    public struct Supervisor: Sendable, Decodable, Equatable {
        /// `airlockd`'s process id.
        public var pid: Int?
        /// `airlockd`'s version.
        public var version: String?
        /// Seconds since `airlockd` started.
        public var uptimeSeconds: Double?
        /// The socket it listens on.
        public var socket: String?
        /// Client connections open now.
        public var connections: Int?
        /// How many of them have a result ring (shared memory airlockd writes large
        /// results into), and those rings' bytes in all.
        public var resultRings: Int?
        public var resultRingBytes: Int?
        /// The configuration file's path, or `built-in demo`.
        public var configuration: String?
    }

    /// One failure a worker had recently.
    public struct Failure: Sendable, Decodable, Equatable {
        /// When, as ISO 8601 text.
        public var time: String?
        /// What happened.
        public var message: String?
    }

    /// One plug-in's worker.
    public struct Worker: Sendable, Decodable, Equatable {
        /// The plug-in's registered name.
        public var plugin: String
        /// The plug-in's shared object.
        public var library: String?
        /// The worker's process id; nil or 0 when no worker runs.
        public var pid: Int?
        /// `running`, `starting`, `idle`, `stopping`, `failed` or `quarantined`.
        public var state: String?
        /// Seconds since the worker started.
        public var uptimeSeconds: Double?
        /// How many times the worker was restarted.
        public var restarts: Int?
        /// How the previous worker ended, e.g. `killed by SIGSEGV (signal 11) in WSManPluginCommand`.
        public var lastExit: String?
        /// The worker's resident memory.
        public var rssBytes: UInt64?
        /// CPU time the worker used (user and system).
        public var cpuSeconds: Double?
        /// The worker's threads.
        public var threads: Int?
        /// The worker's open file descriptors.
        public var fds: Int?
        /// Shells open in the plug-in.
        public var shells: Int?
        /// Commands running in the plug-in.
        public var commands: Int?
        /// Operations the worker has not completed yet.
        public var operationsInFlight: Int?
        /// Median round trip through the worker, in microseconds.
        public var latencyP50Us: Double?
        /// 99th percentile round trip through the worker, in microseconds.
        public var latencyP99Us: Double?
        /// Each sandbox layer's state (`active`, `off`, `unavailable: ...`), by layer name.
        public var sandbox: [String: String]?
        /// Seconds until a quarantined plug-in may start again.
        public var quarantinedUntil: Double?
        /// Plug-in threads still running after the last `WSManPluginShutdown`.
        public var threadsLeftAfterShutdown: Int?
        /// The worker's recent failures, oldest first.
        public var recentFailures: [Failure]?
    }

    /// One shell, as the supervisor lists it (every shell for administrators, the caller's
    /// own for everyone else).
    public struct ShellEntry: Sendable, Decodable, Equatable {
        /// The shell's id.
        public var id: UInt64
        /// Its plug-in.
        public var plugin: String?
        /// The user who created it.
        public var owner: String?
        /// That user's id.
        public var ownerUID: UInt32?
        /// The ids of its commands.
        public var commands: [UInt64]?
        /// E.g. `connected` or `disconnected`.
        public var state: String?
    }

    /// The supervisor process, when reported.
    public var supervisor: Supervisor?
    /// One entry per registered plug-in.
    public var workers: [Worker]
    /// Shells, when reported.
    public var shells: [ShellEntry]?

    private enum CodingKeys: String, CodingKey {
        case supervisor, workers, shells
    }

    /// Decodes the supervisor's JSON object; a missing `workers` array is an empty one.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        supervisor = try container.decodeIfPresent(Supervisor.self, forKey: .supervisor)
        workers = try container.decodeIfPresent([Worker].self, forKey: .workers) ?? []
        shells = try container.decodeIfPresent([ShellEntry].self, forKey: .shells)
    }

    /// Decodes the supervisor's JSON.
    public init(json: String) throws(AirlockError) {
        do {
            self = try JSONDecoder().decode(StatusReport.self, from: Data(json.utf8))
        } catch {
            throw AirlockError(kind: .protocolViolation, code: WSManError.invalidProviderResponse, message: "airlockd's status is not the expected JSON: \(error)")
        }
    }
}

/// One registered plug-in, as `LIST_PLUGINS` reports it.
public struct PluginInfo: Sendable, Decodable, Equatable {
    /// The registered name.
    public var name: String
    /// The shared object's path.
    public var library: String?
    /// The resource URIs it serves.
    public var resourceUris: [String]?
    /// Whether it accepts operations.
    public var enabled: Bool?
    /// Whether its worker starts with the supervisor and after a crash.
    public var autoRestart: Bool?
}

extension AirlockConnection {
    /// The supervisor's status, decoded (`STATUS`).
    ///
    /// - Parameter plugin: one plug-in's name, or nil for every worker.
    public func statusReport(plugin: String? = nil) async throws(AirlockError) -> StatusReport {
        try StatusReport(json: try await status(plugin: plugin))
    }

    /// The registered plug-ins (`LIST_PLUGINS`).
    public func listPlugins() async throws(AirlockError) -> [PluginInfo] {
        let json = try await listPluginsJSON()
        do {
            return try JSONDecoder().decode([PluginInfo].self, from: Data(json.utf8))
        } catch {
            throw AirlockError(kind: .protocolViolation, code: WSManError.invalidProviderResponse, message: "airlockd's plug-in list is not the expected JSON: \(error)")
        }
    }
}
