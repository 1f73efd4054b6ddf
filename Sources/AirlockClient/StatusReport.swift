import Foundation

/// The supervisor's status (`STATUS`), decoded leniently: every field the supervisor may
/// omit is optional, and unknown fields are ignored.
public struct StatusReport: Sendable, Decodable, Equatable {
    /// The supervisor process.
    public struct Supervisor: Sendable, Decodable, Equatable {
        public var pid: Int?
        public var version: String?
        public var uptimeSeconds: Double?
        public var socket: String?
        public var connections: Int?
        /// The configuration file's path, or `built-in demo`.
        public var configuration: String?
    }

    /// One failure a worker had recently.
    public struct Failure: Sendable, Decodable, Equatable {
        /// When, as ISO 8601 text.
        public var time: String?
        public var message: String?
    }

    /// One plug-in's worker.
    public struct Worker: Sendable, Decodable, Equatable {
        public var plugin: String
        public var library: String?
        /// The worker's process id; nil or 0 when no worker runs.
        public var pid: Int?
        /// `running`, `starting`, `idle`, `stopping`, `failed` or `quarantined`.
        public var state: String?
        public var uptimeSeconds: Double?
        public var restarts: Int?
        /// How the previous worker ended, e.g. `killed by SIGSEGV (signal 11) in WSManPluginCommand`.
        public var lastExit: String?
        public var rssBytes: UInt64?
        public var cpuSeconds: Double?
        public var threads: Int?
        public var fds: Int?
        public var shells: Int?
        public var commands: Int?
        public var operationsInFlight: Int?
        public var latencyP50Us: Double?
        public var latencyP99Us: Double?
        /// Each sandbox layer's state (`active`, `off`, `unavailable: ...`), by layer name.
        public var sandbox: [String: String]?
        /// Seconds until a quarantined plug-in may start again.
        public var quarantinedUntil: Double?
        public var threadsLeftAfterShutdown: Int?
        public var recentFailures: [Failure]?
    }

    public var supervisor: Supervisor?
    public var workers: [Worker]

    private enum CodingKeys: String, CodingKey {
        case supervisor, workers
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        supervisor = try container.decodeIfPresent(Supervisor.self, forKey: .supervisor)
        workers = try container.decodeIfPresent([Worker].self, forKey: .workers) ?? []
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
    public var name: String
    /// The shared object's path.
    public var library: String?
    public var resourceUris: [String]?
    public var enabled: Bool?
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
