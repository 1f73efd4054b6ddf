import AirlockClient
import ArgumentParser

/// `airlockctl status [PLUGIN] [--json]`.
struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the supervisor and its workers.",
        discussion: """
            Without PLUGIN: the supervisor (pid, version, uptime, socket, connections) and one \
            block per worker. With PLUGIN: that worker only, with its recent failures. --json \
            prints the supervisor's JSON unchanged, indented.
            """)

    @OptionGroup var global: GlobalOptions

    @Argument(help: ArgumentHelp("Show only this plug-in's worker.", valueName: "plugin"))
    var plugin: String?

    @Flag(name: .long, help: "Print the supervisor's JSON.")
    var json = false

    func run() async throws {
        let connection = try await connect(global)
        defer { connection.close() }
        let text: String
        do {
            text = try await connection.status(plugin: plugin)
        } catch {
            throw report(error, plugin: plugin)
        }
        if json {
            printOutput(JSONIndenter.indent(text) + "\n")
            return
        }
        let status: StatusReport
        do {
            status = try StatusReport(json: text)
        } catch {
            throw report(error)
        }
        let style = TextStyle(colors: TextStyle.standardOutputIsTerminal)
        if let plugin {
            guard let worker = status.workers.first(where: { $0.plugin == plugin }) else {
                printError("airlockd reports no worker for plug-in '\(plugin)'")
                throw ExitCode(ExitStatus.operationFailed)
            }
            printOutput(StatusRenderer.render(worker, detailed: true, style: style))
        } else {
            printOutput(StatusRenderer.render(status, style: style))
        }
    }
}

/// `airlockctl plugins [--json]`.
struct Plugins: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the registered plug-ins.")

    @OptionGroup var global: GlobalOptions

    @Flag(name: .long, help: "Print the supervisor's JSON.")
    var json = false

    func run() async throws {
        let connection = try await connect(global)
        defer { connection.close() }
        if json {
            do {
                printOutput(JSONIndenter.indent(try await connection.listPluginsJSON()) + "\n")
            } catch {
                throw report(error)
            }
            return
        }
        let plugins: [PluginInfo]
        do {
            plugins = try await connection.listPlugins()
        } catch {
            throw report(error)
        }
        printOutput(StatusRenderer.render(plugins))
    }
}

/// `airlockctl restart PLUGIN`.
struct Restart: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Restart a plug-in's worker (its operations fail).")

    @OptionGroup var global: GlobalOptions

    @Argument(help: ArgumentHelp("The plug-in.", valueName: "plugin"))
    var plugin: String

    func run() async throws {
        let connection = try await connect(global)
        defer { connection.close() }
        do {
            try await connection.restartPlugin(plugin)
        } catch {
            throw report(error, plugin: plugin)
        }
        printOutput("Restarted plug-in '\(plugin)'.\n")
    }
}

/// `airlockctl stop PLUGIN`.
struct Stop: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Stop a plug-in's worker; the next operation starts it again.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: ArgumentHelp("The plug-in.", valueName: "plugin"))
    var plugin: String

    func run() async throws {
        let connection = try await connect(global)
        defer { connection.close() }
        do {
            try await connection.stopPlugin(plugin)
        } catch {
            throw report(error, plugin: plugin)
        }
        printOutput("Stopped plug-in '\(plugin)'.\n")
    }
}

/// `airlockctl reload`.
struct Reload: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Make airlockd re-read its configuration.")

    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let connection = try await connect(global)
        defer { connection.close() }
        let summary: String?
        do {
            summary = try await connection.reload()
        } catch {
            throw report(error)
        }
        printOutput((summary.flatMap { $0.isEmpty ? nil : $0 } ?? "Reloaded.") + "\n")
    }
}
