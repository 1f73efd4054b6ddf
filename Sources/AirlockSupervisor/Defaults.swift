import AirlockProtocol
import Foundation

/// Built-in defaults: socket and state paths, the worker executable, and the demo
/// plug-ins airlockd serves when started with no configuration.
public enum SupervisorDefaults {
    /// PROTOCOL.md §1: `/run/airlock/airlockd.sock` for root, otherwise
    /// `$XDG_RUNTIME_DIR/airlock/airlockd.sock`, or `/tmp/airlock-$UID/airlockd.sock`.
    public static func socketPath() -> String {
        let environment = ProcessInfo.processInfo.environment
        if let override = environment["AIRLOCK_SOCKET"], !override.isEmpty { return override }
        return DefaultSocketPath.forUser(getuid(), runtimeDirectory: environment["XDG_RUNTIME_DIR"])
    }

    /// `/var/lib/airlock` for root, `$XDG_STATE_HOME/airlock` (or `~/.local/state/airlock`) otherwise.
    public static func stateDirectory() -> String {
        if getuid() == 0 { return "/var/lib/airlock" }
        let env = ProcessInfo.processInfo.environment
        if let state = env["XDG_STATE_HOME"], !state.isEmpty { return state + "/airlock" }
        return (env["HOME"] ?? "/tmp") + "/.local/state/airlock"
    }

    /// The folder holding the running executable.
    public static func executableDirectory() -> String {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return (exe as NSString).deletingLastPathComponent
    }

    /// `airlock-worker` next to this executable, else `/usr/libexec/airlock/airlock-worker`.
    public static func workerExecutable() -> String {
        let sibling = executableDirectory() + "/airlock-worker"
        if FileManager.default.isExecutableFile(atPath: sibling) { return sibling }
        return "/usr/libexec/airlock/airlock-worker"
    }

    /// Where an example plug-in's library is: next to the executable (a build folder),
    /// else `/usr/lib/airlock/plugins`.
    public static func examplePluginPath(_ name: String) -> String {
        let file = "libairlock-plugin-\(name).so"
        for directory in [executableDirectory(), (executableDirectory() as NSString).deletingLastPathComponent + "/lib/airlock/plugins", "/usr/lib/airlock/plugins"] {
            let path = directory + "/" + file
            if FileManager.default.fileExists(atPath: path) { return path }
        }
        return executableDirectory() + "/" + file
    }

    /// The demo: the example plug-ins `echo` and `shell` with WinRS's cmd resource URI.
    public static func demoPlugins() -> [PluginConfiguration] {
        var echo = PluginConfiguration(name: "echo", library: examplePluginPath("echo"),
                                       resources: [.init(uri: "http://schemas.airlock.dev/plugins/echo", exactMatch: false)])
        echo.initializationParameters = "<InitializationParameters><Param Name=\"Greeting\" Value=\"hello\"/></InitializationParameters>"
        let shell = PluginConfiguration(name: "shell", library: examplePluginPath("shell"),
                                        resources: [.init(uri: "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd", exactMatch: false)])
        return [echo, shell]
    }
}
