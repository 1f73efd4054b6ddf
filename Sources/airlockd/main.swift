import AirlockLogging
import AirlockSupervisor
import AirlockSystemd
import ArgumentParser
import Foundation
import Logging

/// `airlockd`: the Airlock supervisor.
struct AirlockDaemon: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "airlockd",
        abstract: "Hosts WinRM operations plug-ins out of process, one sandboxed worker per plug-in.",
        discussion: """
            With no --config and no --plugin, airlockd serves the example plug-ins (echo, shell) on the \
            default socket: a demo that needs no configuration. Try `airlockctl run --plugin shell -- uname -a`.
            Signals: SIGTERM/SIGINT stop (workers get WSManPluginShutdown), SIGHUP reloads the configuration.
            """,
        version: Supervisor.version)

    @Option(help: "Unix socket to listen on (default: /run/airlock/airlockd.sock as root, else $XDG_RUNTIME_DIR/airlock/airlockd.sock).")
    var socket: String?

    @Option(help: "Configuration file (JSON; see README).")
    var config: String?

    @Option(name: .customLong("plugin"), help: ArgumentHelp("Register a plug-in with default settings (repeatable).", valueName: "NAME=LIBRARY"))
    var plugins: [String] = []

    @Option(help: "Parent of each plug-in's writable state folder.")
    var stateDirectory: String?

    @Option(help: "The airlock-worker executable (default: next to airlockd).")
    var worker: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    mutating func run() throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        AirlockLog.bootstrap(label: "airlockd", level: level)
        let logger = Logger(label: "airlockd")
        let options = self
        let load: @Sendable () throws -> SupervisorConfiguration = { try options.loadConfiguration() }
        let configuration: SupervisorConfiguration
        do {
            configuration = try load()
        } catch {
            throw ValidationError("\(error)")
        }
        let notifier = SystemdNotifier()
        var notifications = ServiceNotifications()
        if notifier.isEnabled {
            notifications.ready = { _ = try? notifier.ready(status: $0) }
            notifications.status = { _ = try? notifier.status($0) }
            notifications.stopping = { _ = try? notifier.stopping(status: $0) }
            notifications.reloading = { _ = try? notifier.reloading() }
            notifications.watchdog = { _ = try? notifier.watchdog() }
            notifications.watchdogInterval = notifier.watchdogInterval
        }
        let inherited = SocketActivation.listenFileDescriptors().first
        let supervisor = try Supervisor(
            configuration: configuration, reloadConfiguration: load, listeningSocket: inherited,
            notifications: notifications, logger: logger)
        try supervisor.run()
    }

    func loadConfiguration() throws -> SupervisorConfiguration {
        var defaults = SupervisorConfiguration(
            socketPath: socket ?? SupervisorDefaults.socketPath(),
            stateDirectory: stateDirectory ?? SupervisorDefaults.stateDirectory(),
            workerExecutable: worker ?? SupervisorDefaults.workerExecutable(),
            plugins: [], source: "command line")
        for spec in plugins {
            guard let eq = spec.firstIndex(of: "=") else {
                throw ConfigurationError("--plugin \(spec): expected NAME=LIBRARY, e.g. --plugin echo=/usr/lib/airlock/plugins/libairlock-plugin-echo.so")
            }
            let name = String(spec[..<eq])
            var library = String(spec[spec.index(after: eq)...])
            if !library.hasPrefix("/") { library = FileManager.default.currentDirectoryPath + "/" + library }
            defaults.plugins.append(PluginConfiguration(name: name, library: library))
        }
        if config == nil && plugins.isEmpty {
            defaults.plugins = SupervisorDefaults.demoPlugins()
            defaults.source = "built-in demo (the example plug-ins)"
        }
        var result = defaults
        if let config {
            result = try SupervisorConfiguration.load(path: config, defaults: defaults)
            // Command-line options win over the file.
            if let socket { result.socketPath = socket }
            if let stateDirectory { result.stateDirectory = stateDirectory }
            if let worker { result.workerExecutable = worker }
        }
        try result.validate()
        return result
    }
}

AirlockDaemon.main()
