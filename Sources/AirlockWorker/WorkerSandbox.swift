import AirlockProtocol

/// The sandbox step of startup. Temporary: AirlockSandbox has not landed yet, so every
/// layer is reported as not applied.
enum WorkerSandbox {
    /// Enters the sandbox described by the encoded profile; returns each layer's state.
    static func enter(profile: [UInt8], pluginPath: String, channelFD: Int32) throws -> [SandboxLayerReport] {
        []
    }
}
