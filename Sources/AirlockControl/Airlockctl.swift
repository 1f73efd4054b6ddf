import AirlockClient
import ArgumentParser

/// The `airlockctl` command line: run a command through a plug-in, show the supervisor's
/// status, list and administer plug-ins.
public struct Airlockctl: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "airlockctl",
        abstract: "Talk to airlockd: run commands through its plug-ins, show its status, administer plug-ins.",
        discussion: """
            The socket is --socket PATH (before or after the subcommand), else $AIRLOCK_SOCKET, \
            else /run/airlock/airlockd.sock for root and $XDG_RUNTIME_DIR/airlock/airlockd.sock \
            (or /tmp/airlock-$UID/airlockd.sock) for other users.

            Exit status:
              0     success
              N     'run': the command's own exit code
              64    usage error
              69    airlockd cannot be reached, or the connection to it was lost (EX_UNAVAILABLE)
              125   airlockd or the plug-in failed the operation (the message names the WSMan error)
              130   interrupted before the command started
            """,
        subcommands: [Run.self, Status.self, Plugins.self, Shells.self, CloseShell.self, Restart.self, Stop.self, Reload.self]
    )

    @OptionGroup var global: GlobalOptions

    public init() {}
}

/// Options every subcommand takes.
struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The airlockd socket.", valueName: "path"))
    var socket: String?

    /// The socket to use: `--socket`, else the default rule.
    var socketPath: String { socket ?? defaultSocketPath() }
}

extension Airlockctl {
    /// Parses the process's arguments, runs the subcommand and exits with its status.
    public static func runFromCommandLine() async {
        await main(nil)
    }
}
