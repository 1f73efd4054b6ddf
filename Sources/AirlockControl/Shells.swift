import AirlockClient
import ArgumentParser
import Foundation

/// `airlockctl shells [PLUGIN] [--json]`.
struct Shells: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List shells: your own, or every user's for administrators.",
        discussion: """
            One line per shell: its id, plug-in, owner (user name and uid), state (creating, \
            connected, disconnected, closing) and the ids of its running commands. \
            Administrators (Admins in airlockd's configuration, and root) see every user's \
            shells; everyone else sees their own. --json prints the list as a JSON array.
            """)

    @OptionGroup var global: GlobalOptions

    @Argument(help: ArgumentHelp("Only this plug-in's shells.", valueName: "plugin"))
    var plugin: String?

    @Flag(name: .long, help: "Print the shells as a JSON array.")
    var json = false

    func run() async throws {
        let connection = try await connect(global)
        defer { connection.close() }
        let shells: [ShellStatus]
        do {
            shells = try await connection.shells(plugin: plugin)
        } catch {
            throw report(error, plugin: plugin)
        }
        if json {
            guard !shells.isEmpty else {
                printOutput("[]\n")
                return
            }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            let data = (try? encoder.encode(shells)) ?? Data("[]".utf8)
            printOutput(String(decoding: data, as: UTF8.self) + "\n")
            return
        }
        printOutput(Self.render(shells))
    }

    /// The table `airlockctl shells` prints.
    static func render(_ shells: [ShellStatus]) -> String {
        if shells.isEmpty { return "No shells.\n" }
        var rows = [["ID", "PLUGIN", "OWNER", "STATE", "COMMANDS"]]
        for shell in shells {
            let owner = shell.ownerUID.map { "\(shell.owner) (\($0))" } ?? shell.owner
            let commands = shell.commands.isEmpty ? "-" : shell.commands.map(String.init).joined(separator: ",")
            rows.append([String(shell.id), shell.plugin, owner, shell.state, commands])
        }
        return StatusRenderer.table(rows)
    }
}

/// `airlockctl close-shell ID`.
struct CloseShell: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "close-shell",
        abstract: "Close a shell by id (administrators may close anyone's).",
        discussion: """
            Cancels the shell's commands and closes it, as its owner's client would. The ids \
            are those of 'airlockctl shells'. Closing another user's shell needs an \
            administrator (Admins in airlockd's configuration, and root).
            """)

    @OptionGroup var global: GlobalOptions

    @Argument(help: ArgumentHelp("The shell's id.", valueName: "id"))
    var id: UInt64

    func run() async throws {
        let connection = try await connect(global)
        defer { connection.close() }
        do {
            try await connection.closeShell(id: id)
        } catch {
            throw report(error)
        }
        printOutput("Closed shell \(id).\n")
    }
}
