import AirlockProtocol
import AirlockSandbox

/// The sandbox step of startup: decodes `W_START.sandboxProfile` and confines this
/// process with AirlockSandbox before the library is loaded.
enum WorkerSandbox {
    /// Enters the sandbox; returns each layer's state for `W_READY`. With a PID
    /// namespace it returns in a forked child (the process that hosts the plug-in).
    static func enter(profile bytes: [UInt8], pluginPath: String, channelFD: Int32) throws -> [SandboxLayerReport] {
        let profile = try SandboxProfile(decoding: bytes)
        return try Sandbox.enter(profile, pluginPath: pluginPath, channelFD: channelFD)
            .map { SandboxLayerReport(name: $0.name, state: $0.state) }
    }
}
