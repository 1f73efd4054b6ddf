import AirlockProtocol
import AirlockSandbox

/// The sandbox step of startup: decodes `W_START.sandboxProfile` and confines this
/// process with AirlockSandbox before the library is loaded.
enum WorkerSandbox {
    /// Why the sandbox could not be entered, with the `W_READY` error code.
    struct Failure: Error {
        var code: UInt32
        var message: String
    }

    /// Enters the sandbox; returns each layer's state for `W_READY`. With a PID
    /// namespace it returns in a forked child (the process that hosts the plug-in).
    static func enter(profile bytes: [UInt8], plugin: String, pluginPath: String, channelFD: Int32) throws(Failure) -> [SandboxLayerReport] {
        let profile: SandboxProfile
        do {
            profile = try SandboxProfile(decoding: bytes)
        } catch {
            throw Failure(code: WSManError.pluginConfigurationCorrupted, message: "the sandbox profile of plug-in \(plugin) is malformed: \(error)")
        }
        do {
            return try Sandbox.enter(profile, pluginPath: pluginPath, channelFD: channelFD)
                .map { SandboxLayerReport(name: $0.name, state: $0.state) }
        } catch {
            throw Failure(code: WSManError.providerLoadFailed, message: "the worker of plug-in \(plugin) cannot enter its sandbox: \(error)")
        }
    }
}
