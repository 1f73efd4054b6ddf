import AirlockProtocol

/// The WinRM shell namespace that prefixes command states and signal codes.
let shellNamespace = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"

/// The state a plug-in reports for a command (`WSMAN_COMMAND_STATE_*`).
public enum CommandState: Sendable, Hashable, CustomStringConvertible {
    /// `WSMAN_COMMAND_STATE_DONE`: the command ended; the exit code is valid.
    case done
    /// `WSMAN_COMMAND_STATE_PENDING`.
    case pending
    /// `WSMAN_COMMAND_STATE_RUNNING`.
    case running
    /// A state URI this library does not know, unchanged.
    case other(String)

    /// Interprets a command state URI.
    public init(uri: String) {
        switch uri {
        case CommandState.done.uri: self = .done
        case CommandState.pending.uri: self = .pending
        case CommandState.running.uri: self = .running
        default: self = .other(uri)
        }
    }

    /// The URI on the wire.
    public var uri: String {
        switch self {
        case .done: shellNamespace + "/CommandState/Done"
        case .pending: shellNamespace + "/CommandState/Pending"
        case .running: shellNamespace + "/CommandState/Running"
        case .other(let uri): uri
        }
    }

    /// `Done`, `Pending`, `Running`, or the URI.
    public var description: String {
        switch self {
        case .done: "Done"
        case .pending: "Pending"
        case .running: "Running"
        case .other(let uri): uri
        }
    }
}

/// A signal for a shell or command (`WSMAN_SIGNAL_SHELL_CODE_*`); the plug-in decides
/// what it does.
public enum SignalCode: Sendable, Hashable, CustomStringConvertible {
    /// `WSMAN_SIGNAL_SHELL_CODE_TERMINATE`.
    case terminate
    /// `WSMAN_SIGNAL_SHELL_CODE_CTRL_C`.
    case ctrlC
    /// `WSMAN_SIGNAL_SHELL_CODE_CTRL_BREAK`.
    case ctrlBreak
    /// A plug-in defined signal code, sent unchanged.
    case custom(String)

    /// The URI on the wire.
    public var uri: String {
        switch self {
        case .terminate: Self.terminateURI
        case .ctrlC: Self.ctrlCURI
        case .ctrlBreak: Self.ctrlBreakURI
        case .custom(let code): code
        }
    }

    /// `terminate`, `ctrl_c`, `ctrl_break`, or the custom code.
    public var description: String {
        switch self {
        case .terminate: "terminate"
        case .ctrlC: "ctrl_c"
        case .ctrlBreak: "ctrl_break"
        case .custom(let code): code
        }
    }

    private static let terminateURI = shellNamespace + "/signal/terminate"
    private static let ctrlCURI = shellNamespace + "/signal/ctrl_c"
    private static let ctrlBreakURI = shellNamespace + "/signal/ctrl_break"
}

/// The `WSMAN_FLAG_RECEIVE_*` flags of one result.
public struct ReceiveFlags: OptionSet, Sendable, Hashable {
    /// The flag bits.
    public let rawValue: UInt32
    /// Flags from their bits.
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// `WSMAN_FLAG_RECEIVE_RESULT_NO_MORE_DATA`: the last result for this stream.
    public static let noMoreData = ReceiveFlags(rawValue: 1)
    /// `WSMAN_FLAG_RECEIVE_FLUSH`: the plug-in asked for its results to be sent now.
    public static let flush = ReceiveFlags(rawValue: 2)
    /// `WSMAN_FLAG_RECEIVE_RESULT_DATA_BOUNDARY`: the data ends a logical unit.
    public static let dataBoundary = ReceiveFlags(rawValue: 4)
}

/// One `WSManPluginReceiveResult` call of a plug-in: a piece of output, a command state,
/// or both.
public struct OutputChunk: Sendable, Equatable {
    /// The output stream (`stdout`, `stderr`, ...), or nil for a state-only result.
    public var stream: String?
    /// The data as the plug-in passed it.
    public var data: WSManData
    /// The command state, when the plug-in reported one.
    public var commandState: CommandState?
    /// The command's exit code; present only when ``commandState`` is ``CommandState/done``.
    public var exitCode: UInt32?
    /// The result's flags.
    public var flags: ReceiveFlags

    /// Creates a chunk.
    public init(stream: String?, data: WSManData, commandState: CommandState? = nil, exitCode: UInt32? = nil, flags: ReceiveFlags = []) {
        self.stream = stream
        self.data = data
        self.commandState = commandState
        self.exitCode = exitCode
        self.flags = flags
    }

    init(_ result: ReceiveResult) {
        let state = result.commandState.map(CommandState.init(uri:))
        self.init(
            stream: result.stream, data: result.streamResult, commandState: state,
            exitCode: state == .done ? result.exitCode : nil, flags: ReceiveFlags(rawValue: result.flags))
    }

    /// The data's bytes: binary data unchanged, text as UTF-8, a DWORD as 4 little-endian
    /// bytes, nothing for no data.
    public var bytes: [UInt8] {
        switch data {
        case .none: []
        case .binary(let bytes): bytes
        case .text(let text): Array(text.utf8)
        case .dword(let value): withUnsafeBytes(of: value.littleEndian) { Array($0) }
        }
    }
}

/// What a `SHELL_CLOSED` or `COMMAND_ENDED` event reported: the shell or command ended on
/// the server's side (the plug-in completed it, its worker died, or it was closed).
public struct EndNotice: Sendable, Hashable, CustomStringConvertible {
    /// 0 for a normal end, otherwise the WSMan/Win32 error code.
    public var errorCode: UInt32
    /// The plug-in's extended information, when it gave one.
    public var extendedInformation: String?
    /// Airlock's sentence about the end.
    public var message: String

    /// Creates a notice.
    public init(errorCode: UInt32, extendedInformation: String?, message: String) {
        self.errorCode = errorCode
        self.extendedInformation = extendedInformation
        self.message = message
    }

    /// The error this end represents, or nil for a normal end.
    public var error: AirlockError? {
        errorCode == WSManError.noError ? nil
            : AirlockError(code: errorCode, extendedInformation: extendedInformation, message: message)
    }

    /// The error's description, or a sentence about the normal end.
    public var description: String {
        error.map(\.description) ?? (message.isEmpty ? "ended normally" : message)
    }
}
