import AirlockProtocol
import CWSMan
import Glibc

/// A `WSMAN_PLUGIN_REQUEST *` as the entry points take it.
typealias RequestPointer = UnsafeMutablePointer<WSMAN_PLUGIN_REQUEST>
/// A `PCWSTR`.
typealias WidePointer = UnsafePointer<UInt16>

/// The plug-in's entry points (`winrm-plugin-api.md` §2), as C function pointers.
enum EntryPoint {
    typealias Startup = @convention(c) (UInt32, WidePointer?, WidePointer?, UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> UInt32
    typealias Shutdown = @convention(c) (UnsafeMutableRawPointer?, UInt32, UInt32) -> UInt32
    typealias Shell = @convention(c) (
        UnsafeMutableRawPointer?, RequestPointer?, UInt32, UnsafeMutablePointer<WSMAN_SHELL_STARTUP_INFO_V11>?,
        UnsafeMutablePointer<WSMAN_DATA>?) -> Void
    typealias Command = @convention(c) (
        RequestPointer?, UInt32, UnsafeMutableRawPointer?, WidePointer?, UnsafeMutablePointer<WSMAN_COMMAND_ARG_SET>?) -> Void
    typealias Send = @convention(c) (
        RequestPointer?, UInt32, UnsafeMutableRawPointer?, UnsafeMutableRawPointer?, WidePointer?, UnsafeMutablePointer<WSMAN_DATA>?) -> Void
    typealias Receive = @convention(c) (
        RequestPointer?, UInt32, UnsafeMutableRawPointer?, UnsafeMutableRawPointer?, UnsafeMutablePointer<WSMAN_STREAM_ID_SET>?) -> Void
    typealias Signal = @convention(c) (RequestPointer?, UInt32, UnsafeMutableRawPointer?, UnsafeMutableRawPointer?, WidePointer?) -> Void
    typealias Connect = @convention(c) (
        RequestPointer?, UInt32, UnsafeMutableRawPointer?, UnsafeMutableRawPointer?, UnsafeMutablePointer<WSMAN_DATA>?) -> Void
    typealias ReleaseShellContext = @convention(c) (UnsafeMutableRawPointer?) -> Void
    typealias ReleaseCommandContext = @convention(c) (UnsafeMutableRawPointer?, UnsafeMutableRawPointer?) -> Void
}

/// A loaded plug-in library and the entry points it exports.
///
/// It is never closed: the worker process ends instead (`dlclose` after Shutdown would
/// let a leaked plug-in thread run unmapped code).
struct PluginLibrary: @unchecked Sendable {
    var startup: EntryPoint.Startup?
    var shutdown: EntryPoint.Shutdown?
    var shell: EntryPoint.Shell?
    var command: EntryPoint.Command?
    var send: EntryPoint.Send?
    var receive: EntryPoint.Receive?
    var signal: EntryPoint.Signal?
    var connect: EntryPoint.Connect?
    var releaseShellContext: EntryPoint.ReleaseShellContext?
    var releaseCommandContext: EntryPoint.ReleaseCommandContext?
    /// The `W_READY.exports` bit mask.
    var exports: PluginExports = []

    /// Why a library could not be used.
    struct LoadError: Error {
        var code: UInt32
        var message: String
        /// The entry points found, when the library loaded.
        var exports: PluginExports = []
    }

    /// `dlopen(path, RTLD_NOW | RTLD_LOCAL)` and `dlsym` of every entry point. Fails
    /// with `ERROR_WSMAN_FILE_NOT_PRESENT` when there is no file at `path`, and with
    /// `ERROR_WSMAN_PROVIDER_LOAD_FAILED` when the loader refuses it (with `dlerror()`)
    /// or a mandatory entry point is missing (naming each one).
    static func load(path: String, plugin: String) -> Result<PluginLibrary, LoadError> {
        var status = stat()
        if stat(path, &status) != 0 && (errno == ENOENT || errno == ENOTDIR) {
            return .failure(LoadError(
                code: WSManError.fileNotPresent,
                message: "the library of plug-in \(plugin) does not exist: \(path)"))
        }
        guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
            let reason = dlerror().map { String(cString: $0) } ?? "unknown error"
            return .failure(LoadError(
                code: WSManError.providerLoadFailed,
                message: "cannot load the library of plug-in \(plugin): \(reason)"))
        }
        func symbol<Function>(_ name: String, _ bit: PluginExports, as type: Function.Type, into library: inout PluginLibrary) -> Function? {
            guard let address = dlsym(handle, name) else { return nil }
            library.exports.insert(bit)
            return unsafeBitCast(address, to: type)
        }
        var library = PluginLibrary()
        library.startup = symbol("WSManPluginStartup", .startup, as: EntryPoint.Startup.self, into: &library)
        library.shutdown = symbol("WSManPluginShutdown", .shutdown, as: EntryPoint.Shutdown.self, into: &library)
        library.shell = symbol("WSManPluginShell", .shell, as: EntryPoint.Shell.self, into: &library)
        library.command = symbol("WSManPluginCommand", .command, as: EntryPoint.Command.self, into: &library)
        library.send = symbol("WSManPluginSend", .send, as: EntryPoint.Send.self, into: &library)
        library.receive = symbol("WSManPluginReceive", .receive, as: EntryPoint.Receive.self, into: &library)
        library.signal = symbol("WSManPluginSignal", .signal, as: EntryPoint.Signal.self, into: &library)
        library.connect = symbol("WSManPluginConnect", .connect, as: EntryPoint.Connect.self, into: &library)
        library.releaseShellContext = symbol(
            "WSManPluginReleaseShellContext", .releaseShellContext, as: EntryPoint.ReleaseShellContext.self, into: &library)
        library.releaseCommandContext = symbol(
            "WSManPluginReleaseCommandContext", .releaseCommandContext, as: EntryPoint.ReleaseCommandContext.self, into: &library)

        let missing = PluginExports.mandatory.filter { !library.exports.contains($0.0) }.map(\.1)
        if !missing.isEmpty {
            let list = missing.count == 1 ? "entry point \(missing[0])" : "entry points " + missing.joined(separator: ", ")
            return .failure(LoadError(
                code: WSManError.providerLoadFailed,
                message: "plug-in \(plugin) (\(path)) does not export the mandatory \(list)",
                exports: library.exports))
        }
        return .success(library)
    }
}
