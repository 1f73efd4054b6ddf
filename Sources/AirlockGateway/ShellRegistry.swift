import AirlockClient
import Synchronization

/// A command as the gateway knows it: the airlockd command and its output buffer.
final class GatewayCommand: Sendable {
    /// The CommandId given to the client (an upper-case UUID).
    let id: String
    let command: Command
    let output: CommandOutputBuffer

    init(id: String, command: Command, output: CommandOutputBuffer) {
        self.id = id
        self.command = command
        self.output = output
    }
}

/// A shell as the gateway knows it: the airlockd shell, its owner and its commands.
final class GatewayShell: Sendable {
    /// The ShellId given to the client (an upper-case UUID).
    let id: String
    /// The user who created it; only they may use it.
    let owner: GatewayUser
    let shell: Shell
    private let commands = Mutex<[String: GatewayCommand]>([:])

    init(id: String, owner: GatewayUser, shell: Shell) {
        self.id = id
        self.owner = owner
        self.shell = shell
    }

    func addCommand(_ command: GatewayCommand) {
        commands.withLock { $0[command.id] = command }
    }

    func command(_ id: String) -> GatewayCommand? {
        commands.withLock { $0[id.uppercased()] }
    }

    @discardableResult
    func removeCommand(_ id: String) -> GatewayCommand? {
        commands.withLock { $0.removeValue(forKey: id.uppercased()) }
    }

    /// Removes every command and closes its output buffer (a pending Receive ends).
    func closeAllCommands() {
        let removed = commands.withLock { all in
            defer { all = [:] }
            return Array(all.values)
        }
        for command in removed { command.output.close() }
    }

    /// Whether airlockd ended the shell by itself: its plug-in closed it, its idle timeout
    /// ran out, or its connection was lost.
    var hasEnded: Bool { shell.closedNotice != nil || shell.connection.failure != nil }
}

/// Every shell the gateway has created, by ShellId.
final class ShellRegistry: Sendable {
    private let shells = Mutex<[String: GatewayShell]>([:])

    init() {}

    func add(_ shell: GatewayShell) {
        shells.withLock { $0[shell.id] = shell }
    }

    /// The shell with this id, if it exists and belongs to `user` (another user's shell is
    /// reported as unknown, as Windows does).
    func shell(_ id: String, for user: GatewayUser) -> GatewayShell? {
        let key = id.uppercased()
        return shells.withLock { $0[key] }.flatMap { $0.owner.name == user.name && $0.owner.isSystemAccount == user.isSystemAccount ? $0 : nil }
    }

    @discardableResult
    func remove(_ id: String) -> GatewayShell? {
        shells.withLock { $0.removeValue(forKey: id) }
    }

    /// Removes and returns the shells that match.
    func removeAll(where matches: (GatewayShell) -> Bool) -> [GatewayShell] {
        shells.withLock { all in
            let removed = all.values.filter(matches)
            for shell in removed { all[shell.id] = nil }
            return removed
        }
    }

    func removeAll() -> [GatewayShell] {
        shells.withLock { all in
            defer { all = [:] }
            return Array(all.values)
        }
    }
}
