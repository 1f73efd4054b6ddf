import AirlockProtocol
import Foundation

/// One shell as `airlockd` reports it in its status (the `shells` array of `STATUS`).
public struct ShellStatus: Sendable, Codable, Equatable {
    /// The shell's id (the `shellId` of the protocol).
    public var id: UInt64
    /// The plug-in the shell belongs to.
    public var plugin: String
    /// The shell's owner (the user who created it) as access lists name it: the user name,
    /// or `gateway:<name>` for a user known only to a gateway (PROTOCOL.md §5.2).
    public var owner: String
    /// The owner's user id; 4294967295 ((uid_t)-1) for a user known only to a gateway.
    public var ownerUID: UInt32?
    /// The ids of the shell's commands that have not ended.
    public var commands: [UInt64]
    /// `creating`, `connected`, `disconnected` or `closing`.
    public var state: String

    /// Creates a shell description.
    public init(id: UInt64, plugin: String, owner: String, ownerUID: UInt32?, commands: [UInt64], state: String) {
        self.id = id
        self.plugin = plugin
        self.owner = owner
        self.ownerUID = ownerUID
        self.commands = commands
        self.state = state
    }

    /// The `shells` array of a status document; empty when the document has none.
    public static func list(statusJSON json: String) throws(AirlockError) -> [ShellStatus] {
        struct Document: Decodable { var shells: [ShellStatus]? }
        do {
            return try JSONDecoder().decode(Document.self, from: Data(json.utf8)).shells ?? []
        } catch {
            throw AirlockError(kind: .protocolViolation, code: WSManError.invalidProviderResponse, message: "airlockd's status has no readable shell list: \(error)")
        }
    }
}

extension AirlockConnection {
    /// The shells this connection's user may see (`STATUS`): every shell for administrators
    /// (`Admins` in airlockd's configuration, and root), the user's own shells for everyone
    /// else.
    ///
    /// - Parameter plugin: only this plug-in's shells, or nil for every plug-in.
    public func shells(plugin: String? = nil) async throws(AirlockError) -> [ShellStatus] {
        try ShellStatus.list(statusJSON: try await status(plugin: plugin))
    }

    /// Closes a shell by its id (`CLOSE_SHELL`), from any connection: its commands are
    /// cancelled and the plug-in completes the Shell operation. Its owner may close it;
    /// administrators may close anyone's shell.
    ///
    /// - Throws: ``AirlockError`` with `ERROR_ACCESS_DENIED` when the shell belongs to
    ///   another user and this one is no administrator, or `ERROR_WSMAN_INVALID_SELECTORS`
    ///   when no such shell exists.
    public func closeShell(id: UInt64) async throws(AirlockError) {
        _ = try await core.perform(.closeShell(shellID: id), shellID: id).get()
        core.forgetShell(id)
    }
}
