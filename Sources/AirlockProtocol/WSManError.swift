/// The WSMan and Win32 error codes Airlock sends and receives (`<wsman.h>`,
/// `winrm-plugin-api.md` §5).
public enum WSManError {
    public static let noError: UInt32 = 0
    public static let accessDenied: UInt32 = 5
    public static let outOfMemory: UInt32 = 14
    public static let invalidParameter: UInt32 = 87
    public static let insufficientBuffer: UInt32 = 122
    public static let operationAborted: UInt32 = 995
    public static let shutdownInProgress: UInt32 = 1115

    public static let resourceNotFound: UInt32 = 0x8033_8000
    public static let providerFailure: UInt32 = 0x8033_8003
    public static let operationTimedOut: UInt32 = 0x8033_8029
    public static let wsmanInvalidParameter: UInt32 = 0x8033_803A
    public static let invalidResourceURI: UInt32 = 0x8033_803B
    public static let quotaLimit: UInt32 = 0x8033_803F
    public static let maxEnvelopeSizeExceeded: UInt32 = 0x8033_8048
    public static let invalidSelectors: UInt32 = 0x8033_805B
    public static let pluginFailed: UInt32 = 0x8033_8083
    public static let providerLoadFailed: UInt32 = 0x8033_809A
    public static let shellAlreadyClosed: UInt32 = 0x8033_814A
    public static let commandAlreadyClosed: UInt32 = 0x8033_814F
    public static let invalidProviderResponse: UInt32 = 0x8033_816D
    public static let shellNotInitialized: UInt32 = 0x8033_816E
    public static let pluginConfigurationCorrupted: UInt32 = 0x8033_8190
    public static let fileNotPresent: UInt32 = 0x8033_8192
    public static let quotaMaxShells: UInt32 = 0x8033_81A5
    public static let quotaMaxOperations: UInt32 = 0x8033_81A6
    public static let quotaUser: UInt32 = 0x8033_81A7
    public static let commandTerminated: UInt32 = 0x8033_81CC
    public static let serviceStreamDisconnected: UInt32 = 0x8033_81DE
    public static let createShellRunAsFailed: UInt32 = 0x8033_81DF

    private static let names: [UInt32: String] = [
        noError: "NO_ERROR",
        accessDenied: "ERROR_ACCESS_DENIED",
        outOfMemory: "ERROR_OUTOFMEMORY",
        invalidParameter: "ERROR_INVALID_PARAMETER",
        insufficientBuffer: "ERROR_INSUFFICIENT_BUFFER",
        operationAborted: "ERROR_OPERATION_ABORTED",
        shutdownInProgress: "ERROR_SHUTDOWN_IN_PROGRESS",
        resourceNotFound: "ERROR_WSMAN_RESOURCE_NOT_FOUND",
        providerFailure: "ERROR_WSMAN_PROVIDER_FAILURE",
        operationTimedOut: "ERROR_WSMAN_OPERATION_TIMEDOUT",
        wsmanInvalidParameter: "ERROR_WSMAN_INVALID_PARAMETER",
        invalidResourceURI: "ERROR_WSMAN_INVALID_RESOURCE_URI",
        quotaLimit: "ERROR_WSMAN_QUOTA_LIMIT",
        maxEnvelopeSizeExceeded: "ERROR_WSMAN_MAX_ENVELOPE_SIZE_EXCEEDED",
        invalidSelectors: "ERROR_WSMAN_INVALID_SELECTORS",
        pluginFailed: "ERROR_WSMAN_PLUGIN_FAILED",
        providerLoadFailed: "ERROR_WSMAN_PROVIDER_LOAD_FAILED",
        shellAlreadyClosed: "ERROR_WSMAN_SHELL_ALREADY_CLOSED",
        commandAlreadyClosed: "ERROR_WSMAN_COMMAND_ALREADY_CLOSED",
        invalidProviderResponse: "ERROR_WSMAN_INVALID_PROVIDER_RESPONSE",
        shellNotInitialized: "ERROR_WSMAN_SHELL_NOT_INITIALIZED",
        pluginConfigurationCorrupted: "ERROR_WSMAN_PLUGIN_CONFIGURATION_CORRUPTED",
        fileNotPresent: "ERROR_WSMAN_FILE_NOT_PRESENT",
        quotaMaxShells: "ERROR_WSMAN_QUOTA_MAX_SHELLS",
        quotaMaxOperations: "ERROR_WSMAN_QUOTA_MAX_OPERATIONS",
        quotaUser: "ERROR_WSMAN_QUOTA_USER",
        commandTerminated: "ERROR_WSMAN_COMMAND_TERMINATED",
        serviceStreamDisconnected: "ERROR_WSMAN_SERVICE_STREAM_DISCONNECTED",
        createShellRunAsFailed: "ERROR_WSMAN_CREATESHELL_RUNAS_FAILED",
    ]

    /// The symbolic name of a code with its hexadecimal value, e.g.
    /// `ERROR_WSMAN_PLUGIN_FAILED (0x80338083)`.
    public static func name(_ code: UInt32) -> String {
        let hex = "0x" + String(code, radix: 16, uppercase: true)
        if let name = names[code] { return "\(name) (\(code < 0x1_0000 ? String(code) : hex))" }
        return code < 0x1_0000 ? "error \(code)" : "error \(hex)"
    }
}
