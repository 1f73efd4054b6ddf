import AirlockClient
import Logging

/// Who a request acts for: the authenticated user and the URL their client used. The
/// gateway keeps one ``AirlockConnection`` per gateway user.
struct GatewayUser: Sendable, Hashable {
    /// The authenticated user's name.
    var name: String
    /// Whether it is a system account (PAM) rather than a gateway-only one (password file).
    var isSystemAccount: Bool
    /// The URL the client addressed, e.g. `http://127.0.0.1:5985/wsman`.
    var httpURL: String
}

/// One `AirlockConnection` per ``GatewayUser``, opened on first use (asserting the user's
/// identity to airlockd), shared by all that user's requests, reopened after it fails, and
/// closed once the user has no shells left and it has been idle for ``idleLifetime``.
actor ConnectionPool {
    private struct Entry {
        var opening: Task<AirlockConnection, any Error>
        var shells = 0
        var lastUsed = ContinuousClock.now
    }

    private let socketPath: String
    private let logger: Logger
    private var entries: [GatewayUser: Entry] = [:]
    private var sweeper: Task<Void, Never>?
    /// How long a connection without shells stays open after its last use.
    let idleLifetime: Duration

    init(socketPath: String, idleLifetime: Duration = .seconds(60), logger: Logger) {
        self.socketPath = socketPath
        self.idleLifetime = idleLifetime
        self.logger = logger
    }

    /// The user's connection, opened (or reopened after a failure) when needed.
    func connection(for user: GatewayUser) async throws(AirlockError) -> AirlockConnection {
        if sweeper == nil { startSweeper() }
        if var entry = entries[user] {
            entry.lastUsed = .now
            entries[user] = entry
            if let connection = try? await entry.opening.value {
                if connection.failure == nil { return connection }
                logger.info("reopening the connection to airlockd", metadata: ["user": "\(user.name)", "reason": "\(connection.failure!)"])
            }
            // Failed to open, or failed since: forget it (unless someone already replaced it).
            if let current = entries[user], current.opening == entry.opening { entries[user] = nil }
            if entries[user] != nil { return try await connection(for: user) }
        }
        let socketPath = self.socketPath
        let opening = Task<AirlockConnection, any Error> {
            try await Self.open(socketPath: socketPath, user: user)
        }
        entries[user] = Entry(opening: opening)
        do {
            return try await opening.value
        } catch {
            if entries[user]?.opening == opening { entries[user] = nil }
            throw error as? AirlockError ?? AirlockError(code: WSManError.serviceStreamDisconnected, message: "\(error)")
        }
    }

    /// Counts a shell created on the user's connection (kept open while it has shells).
    func shellCreated(for user: GatewayUser) {
        entries[user]?.shells += 1
        entries[user]?.lastUsed = .now
    }

    /// Counts a shell deleted.
    func shellDeleted(for user: GatewayUser) {
        guard var entry = entries[user] else { return }
        entry.shells = max(0, entry.shells - 1)
        entry.lastUsed = .now
        entries[user] = entry
    }

    /// Closes every connection.
    func closeAll() async {
        sweeper?.cancel()
        sweeper = nil
        let all = entries.values.map(\.opening)
        entries = [:]
        for opening in all { (try? await opening.value)?.close() }
    }

    private static func open(socketPath: String, user: GatewayUser) async throws(AirlockError) -> AirlockConnection {
        try await AirlockConnection.connect(
            socketPath: socketPath, clientName: "airlock-wsman",
            assertedIdentity: AssertedIdentity(
                userName: user.name, authenticationMechanism: "Basic", httpURL: user.httpURL, isSystemAccount: user.isSystemAccount))
    }

    private func startSweeper() {
        let interval = idleLifetime / 4
        sweeper = Task { [weak self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                await self?.sweep()
            }
        }
    }

    private func sweep() async {
        let now = ContinuousClock.now
        for (user, entry) in entries where entry.shells == 0 && now - entry.lastUsed >= idleLifetime {
            entries[user] = nil
            if let connection = try? await entry.opening.value {
                logger.debug("closing an idle connection to airlockd", metadata: ["user": "\(user.name)"])
                connection.close()
            }
        }
    }
}
