/// The payload structures of every message (PROTOCOL.md §5). Field order in each
/// `encode`/`init(from:)` pair is the wire order.

/// A `WSMAN_DATA` value.
public enum WSManData: Sendable, Equatable {
    case none
    case text(String)
    case binary([UInt8])
    case dword(UInt32)

    func encode(to w: inout ByteWriter) {
        switch self {
        case .none: w.u8(0)
        case .text(let s): w.u8(1); w.str(s)
        case .binary(let b): w.u8(2); w.blob(b)
        case .dword(let d): w.u8(4); w.u32(d)
        }
    }

    init(from r: inout ByteReader) throws(ProtocolError) {
        switch try r.u8("data.kind") {
        case 0: self = .none
        case 1: self = .text(try r.str("data.text"))
        case 2: self = .binary(try r.blob("data.binary"))
        case 4: self = .dword(try r.u32("data.dword"))
        case let kind: throw ProtocolError.malformed("field data.kind: unknown WSMAN_DATA kind \(kind)")
        }
    }
}

/// A `WSMAN_OPTION`.
public struct WSManOption: Sendable, Equatable {
    public var name: String
    public var value: String
    public var mustComply: Bool
    public init(name: String, value: String, mustComply: Bool = false) {
        self.name = name
        self.value = value
        self.mustComply = mustComply
    }
}

/// A `WSMAN_ENVIRONMENT_VARIABLE`.
public struct EnvironmentVariable: Sendable, Equatable {
    public var name: String
    public var value: String
    public init(name: String, value: String) {
        self.name = name
        self.value = value
    }
}

/// One `WSManPluginGetConfiguration` answer the worker serves locally.
public struct ConfigurationValue: Sendable, Equatable {
    /// `WSMAN_PLUGIN_PARAMS_SHAREDHOST` ... `_NAME`.
    public var flag: UInt32
    public var value: WSManData
    public init(flag: UInt32, value: WSManData) {
        self.flag = flag
        self.value = value
    }
}

/// The state of one sandbox layer as a worker reports it.
public struct SandboxLayerReport: Sendable, Equatable {
    public var name: String
    /// `active`, `off`, or `unavailable: <reason>`.
    public var state: String
    public init(name: String, state: String) {
        self.name = name
        self.state = state
    }
}

extension ByteWriter {
    mutating func options(_ options: [WSManOption]) {
        list(options) { w, o in w.str(o.name); w.str(o.value); w.bool(o.mustComply) }
    }
    mutating func environment(_ vars: [EnvironmentVariable]) {
        list(vars) { w, v in w.str(v.name); w.str(v.value) }
    }
}

extension ByteReader {
    mutating func options() throws(ProtocolError) -> [WSManOption] {
        try list("options", minimumElementSize: 9) { (r: inout ByteReader) throws(ProtocolError) in
            WSManOption(name: try r.str("option.name"), value: try r.str("option.value"), mustComply: try r.bool("option.mustComply"))
        }
    }
    mutating func environment() throws(ProtocolError) -> [EnvironmentVariable] {
        try list("environment", minimumElementSize: 8) { (r: inout ByteReader) throws(ProtocolError) in
            EnvironmentVariable(name: try r.str("envvar.name"), value: try r.str("envvar.value"))
        }
    }
}

// MARK: - Connection level

public struct Hello: Sendable, Equatable {
    /// `0x4B4C5241`, the bytes "ARLK".
    public static let magic: UInt32 = 0x4B4C_5241
    public var magic: UInt32
    public var minVersion: UInt16
    public var maxVersion: UInt16
    public var clientName: String
    public init(magic: UInt32 = Hello.magic, minVersion: UInt16 = 1, maxVersion: UInt16 = 1, clientName: String) {
        self.magic = magic
        self.minVersion = minVersion
        self.maxVersion = maxVersion
        self.clientName = clientName
    }
}

/// `ASSERT_IDENTITY`: a trusted gateway says on whose behalf the rest of the connection
/// acts (PROTOCOL.md §5.2). Accepted only from peers listed in airlockd's `TrustedGateways`.
public struct AssertIdentity: Sendable, Equatable {
    /// `flags` bit 0: the user is an account of the system's user database (checked by PAM,
    /// for example); without it, a user known only to the gateway (a password file).
    public static let systemAccount: UInt32 = 1
    /// Every defined flag bit.
    public static let knownFlags: UInt32 = systemAccount

    /// The authenticated user's name (`WSMAN_SENDER_DETAILS.senderName`).
    public var userName: String
    /// How the gateway authenticated the user, e.g. `Basic`.
    public var authenticationMechanism: String
    /// The URL the user's client addressed (`WSMAN_SENDER_DETAILS.httpURL`); may be empty.
    public var httpURL: String
    /// ``systemAccount`` or 0.
    public var flags: UInt32
    public init(userName: String, authenticationMechanism: String, httpURL: String, flags: UInt32) {
        self.userName = userName
        self.authenticationMechanism = authenticationMechanism
        self.httpURL = httpURL
        self.flags = flags
    }
}

public struct HelloAck: Sendable, Equatable {
    public var version: UInt16
    public var maxFrameSize: UInt32
    public var maxOperations: UInt32
    public var serverVersion: String
    public var peerUID: UInt32
    public var peerUserName: String
    public init(version: UInt16, maxFrameSize: UInt32, maxOperations: UInt32, serverVersion: String, peerUID: UInt32, peerUserName: String) {
        self.version = version
        self.maxFrameSize = maxFrameSize
        self.maxOperations = maxOperations
        self.serverVersion = serverVersion
        self.peerUID = peerUID
        self.peerUserName = peerUserName
    }
}

public struct ErrorReport: Sendable, Equatable {
    public var errorCode: UInt32
    public var message: String
    public init(errorCode: UInt32, message: String) {
        self.errorCode = errorCode
        self.message = message
    }
}

// MARK: - Client requests

public struct CreateShell: Sendable, Equatable {
    public var plugin: String
    public var resourceURI: String
    public var timeoutMs: UInt32
    public var idleTimeoutMs: UInt32
    public var inputStreams: [String]
    public var outputStreams: [String]
    public var workingDirectory: String?
    public var environment: [EnvironmentVariable]
    public var name: String?
    public var options: [WSManOption]
    public var optionsMustUnderstand: Bool
    public var inboundShellInformation: WSManData
    public var locale: String
    public var dataLocale: String

    public init(
        plugin: String = "", resourceURI: String = "", timeoutMs: UInt32 = 0, idleTimeoutMs: UInt32 = 0,
        inputStreams: [String] = ["stdin"], outputStreams: [String] = ["stdout", "stderr"],
        workingDirectory: String? = nil, environment: [EnvironmentVariable] = [], name: String? = nil,
        options: [WSManOption] = [], optionsMustUnderstand: Bool = false,
        inboundShellInformation: WSManData = .none, locale: String = "en-US", dataLocale: String = "en-US"
    ) {
        self.plugin = plugin
        self.resourceURI = resourceURI
        self.timeoutMs = timeoutMs
        self.idleTimeoutMs = idleTimeoutMs
        self.inputStreams = inputStreams
        self.outputStreams = outputStreams
        self.workingDirectory = workingDirectory
        self.environment = environment
        self.name = name
        self.options = options
        self.optionsMustUnderstand = optionsMustUnderstand
        self.inboundShellInformation = inboundShellInformation
        self.locale = locale
        self.dataLocale = dataLocale
    }
}

public struct RunCommand: Sendable, Equatable {
    public var shellID: UInt64
    public var timeoutMs: UInt32
    public var commandLine: String
    public var arguments: [String]
    public var options: [WSManOption]
    public init(shellID: UInt64, timeoutMs: UInt32 = 0, commandLine: String, arguments: [String] = [], options: [WSManOption] = []) {
        self.shellID = shellID
        self.timeoutMs = timeoutMs
        self.commandLine = commandLine
        self.arguments = arguments
        self.options = options
    }
}

public struct SendInput: Sendable, Equatable {
    public var shellID: UInt64
    public var commandID: UInt64
    public var timeoutMs: UInt32
    public var stream: String
    public var endOfStream: Bool
    public var data: [UInt8]
    public init(shellID: UInt64, commandID: UInt64, timeoutMs: UInt32 = 0, stream: String = "stdin", endOfStream: Bool, data: [UInt8]) {
        self.shellID = shellID
        self.commandID = commandID
        self.timeoutMs = timeoutMs
        self.stream = stream
        self.endOfStream = endOfStream
        self.data = data
    }
}

public struct ReceiveOutput: Sendable, Equatable {
    public var shellID: UInt64
    public var commandID: UInt64
    public var timeoutMs: UInt32
    public var streams: [String]
    public init(shellID: UInt64, commandID: UInt64, timeoutMs: UInt32 = 0, streams: [String] = []) {
        self.shellID = shellID
        self.commandID = commandID
        self.timeoutMs = timeoutMs
        self.streams = streams
    }
}

public struct SignalRequest: Sendable, Equatable {
    public var shellID: UInt64
    public var commandID: UInt64
    public var timeoutMs: UInt32
    public var code: String
    public init(shellID: UInt64, commandID: UInt64, timeoutMs: UInt32 = 0, code: String) {
        self.shellID = shellID
        self.commandID = commandID
        self.timeoutMs = timeoutMs
        self.code = code
    }
}

public struct ConnectRequest: Sendable, Equatable {
    public var shellID: UInt64
    public var commandID: UInt64
    public var timeoutMs: UInt32
    public var inboundConnectInformation: WSManData
    public init(shellID: UInt64, commandID: UInt64 = 0, timeoutMs: UInt32 = 0, inboundConnectInformation: WSManData = .none) {
        self.shellID = shellID
        self.commandID = commandID
        self.timeoutMs = timeoutMs
        self.inboundConnectInformation = inboundConnectInformation
    }
}

public struct DisconnectRequest: Sendable, Equatable {
    public var shellID: UInt64
    public var idleTimeoutMs: UInt32
    public init(shellID: UInt64, idleTimeoutMs: UInt32) {
        self.shellID = shellID
        self.idleTimeoutMs = idleTimeoutMs
    }
}

// MARK: - Server answers

public struct ShellCreated: Sendable, Equatable {
    public var shellID: UInt64
    public var plugin: String
    public var resourceURI: String
    public init(shellID: UInt64, plugin: String, resourceURI: String) {
        self.shellID = shellID
        self.plugin = plugin
        self.resourceURI = resourceURI
    }
}

/// One `WSManPluginReceiveResult` call (`RECEIVE_RESULT` and `W_RESULT`).
public struct ReceiveResult: Sendable, Equatable {
    public var flags: UInt32
    public var stream: String?
    public var streamResult: WSManData
    public var commandState: String?
    public var exitCode: UInt32
    public init(flags: UInt32 = 0, stream: String?, streamResult: WSManData, commandState: String? = nil, exitCode: UInt32 = 0) {
        self.flags = flags
        self.stream = stream
        self.streamResult = streamResult
        self.commandState = commandState
        self.exitCode = exitCode
    }
}

/// A `RECEIVE_RESULT_IN_RING` (PROTOCOL.md §5.6): a `RECEIVE_RESULT` whose binary data the
/// server wrote into the connection's result ring, `length` bytes at `position` (a count of
/// ring bytes since the ring was opened; the bytes lie at `position % size`, never across
/// the ring's end).
public struct RingReceiveResult: Sendable, Equatable {
    public var flags: UInt32
    public var stream: String?
    public var position: UInt64
    public var length: UInt32
    public var commandState: String?
    public var exitCode: UInt32
    public init(flags: UInt32 = 0, stream: String?, position: UInt64, length: UInt32, commandState: String? = nil, exitCode: UInt32 = 0) {
        self.flags = flags
        self.stream = stream
        self.position = position
        self.length = length
        self.commandState = commandState
        self.exitCode = exitCode
    }

    /// The `RECEIVE_RESULT` it stands for, with `data` as its binary data.
    public func receiveResult(data: [UInt8]) -> ReceiveResult {
        ReceiveResult(flags: flags, stream: stream, streamResult: .binary(data), commandState: commandState, exitCode: exitCode)
    }
}

public struct OperationComplete: Sendable, Equatable {
    public var errorCode: UInt32
    public var extendedInformation: String?
    public var message: String
    public init(errorCode: UInt32, extendedInformation: String? = nil, message: String = "") {
        self.errorCode = errorCode
        self.extendedInformation = extendedInformation
        self.message = message
    }
}

public struct ShellClosed: Sendable, Equatable {
    public var shellID: UInt64
    public var errorCode: UInt32
    public var extendedInformation: String?
    public var message: String
    public init(shellID: UInt64, errorCode: UInt32, extendedInformation: String? = nil, message: String = "") {
        self.shellID = shellID
        self.errorCode = errorCode
        self.extendedInformation = extendedInformation
        self.message = message
    }
}

public struct CommandEnded: Sendable, Equatable {
    public var shellID: UInt64
    public var commandID: UInt64
    public var errorCode: UInt32
    public var extendedInformation: String?
    public var message: String
    public init(shellID: UInt64, commandID: UInt64, errorCode: UInt32, extendedInformation: String? = nil, message: String = "") {
        self.shellID = shellID
        self.commandID = commandID
        self.errorCode = errorCode
        self.extendedInformation = extendedInformation
        self.message = message
    }
}

// MARK: - Worker channel

public struct WorkerStart: Sendable, Equatable {
    public var plugin: String
    public var libraryPath: String
    public var applicationIdentification: String
    public var extraInfo: String?
    public var startupFlags: UInt32
    public var maxEnvelopeSize: UInt32
    public var outputWindowBytes: UInt32
    public var dropOutput: Bool
    public var configuration: [ConfigurationValue]
    public var sandboxProfile: [UInt8]
    public init(
        plugin: String, libraryPath: String, applicationIdentification: String = "wsman", extraInfo: String?,
        startupFlags: UInt32, maxEnvelopeSize: UInt32, outputWindowBytes: UInt32, dropOutput: Bool,
        configuration: [ConfigurationValue], sandboxProfile: [UInt8]
    ) {
        self.plugin = plugin
        self.libraryPath = libraryPath
        self.applicationIdentification = applicationIdentification
        self.extraInfo = extraInfo
        self.startupFlags = startupFlags
        self.maxEnvelopeSize = maxEnvelopeSize
        self.outputWindowBytes = outputWindowBytes
        self.dropOutput = dropOutput
        self.configuration = configuration
        self.sandboxProfile = sandboxProfile
    }
}

public struct WorkerShutdown: Sendable, Equatable {
    public var reason: UInt32
    public var graceMs: UInt32
    public init(reason: UInt32, graceMs: UInt32) {
        self.reason = reason
        self.graceMs = graceMs
    }
}

/// The request context that starts every worker operation request.
public struct RequestContext: Sendable, Equatable {
    public var senderName: String
    public var authenticationMechanism: String
    public var resourceURI: String
    public var locale: String
    public var dataLocale: String
    public var timeoutMs: UInt32
    /// The URL the client addressed, when a gateway asserted one; else empty.
    public var httpURL: String
    public init(senderName: String, authenticationMechanism: String, resourceURI: String, locale: String = "en-US", dataLocale: String = "en-US", timeoutMs: UInt32, httpURL: String = "") {
        self.httpURL = httpURL
        self.senderName = senderName
        self.authenticationMechanism = authenticationMechanism
        self.resourceURI = resourceURI
        self.locale = locale
        self.dataLocale = dataLocale
        self.timeoutMs = timeoutMs
    }

    func encode(to w: inout ByteWriter) {
        Self.encode(
            senderName: senderName, authenticationMechanism: authenticationMechanism, resourceURI: resourceURI,
            locale: locale, dataLocale: dataLocale, timeoutMs: timeoutMs, httpURL: httpURL, to: &w)
    }

    /// Encodes a context from its fields, without building one.
    static func encode(
        senderName: String, authenticationMechanism: String, resourceURI: String, locale: String, dataLocale: String,
        timeoutMs: UInt32, httpURL: String, to w: inout ByteWriter
    ) {
        w.str(senderName); w.str(authenticationMechanism); w.str(resourceURI)
        w.str(locale); w.str(dataLocale); w.u32(timeoutMs); w.str(httpURL)
    }

    init(from r: inout ByteReader) throws(ProtocolError) {
        senderName = try r.str("context.senderName")
        authenticationMechanism = try r.str("context.authenticationMechanism")
        resourceURI = try r.str("context.resourceUri")
        locale = try r.str("context.locale")
        dataLocale = try r.str("context.dataLocale")
        timeoutMs = try r.u32("context.timeoutMs")
        httpURL = try r.str("context.httpUrl")
    }
}

public struct WorkerShell: Sendable, Equatable {
    public var context: RequestContext
    public var shellID: UInt64
    public var idleTimeoutMs: UInt32
    public var inputStreams: [String]
    public var outputStreams: [String]
    public var workingDirectory: String?
    public var environment: [EnvironmentVariable]
    public var name: String?
    public var options: [WSManOption]
    public var optionsMustUnderstand: Bool
    public var inboundShellInformation: WSManData
    public init(
        context: RequestContext, shellID: UInt64, idleTimeoutMs: UInt32, inputStreams: [String], outputStreams: [String],
        workingDirectory: String?, environment: [EnvironmentVariable], name: String?, options: [WSManOption],
        optionsMustUnderstand: Bool, inboundShellInformation: WSManData
    ) {
        self.context = context
        self.shellID = shellID
        self.idleTimeoutMs = idleTimeoutMs
        self.inputStreams = inputStreams
        self.outputStreams = outputStreams
        self.workingDirectory = workingDirectory
        self.environment = environment
        self.name = name
        self.options = options
        self.optionsMustUnderstand = optionsMustUnderstand
        self.inboundShellInformation = inboundShellInformation
    }
}

public struct WorkerCommand: Sendable, Equatable {
    public var context: RequestContext
    public var shellID: UInt64
    public var commandID: UInt64
    public var commandLine: String
    public var arguments: [String]
    public var options: [WSManOption]
    public init(context: RequestContext, shellID: UInt64, commandID: UInt64, commandLine: String, arguments: [String], options: [WSManOption]) {
        self.context = context
        self.shellID = shellID
        self.commandID = commandID
        self.commandLine = commandLine
        self.arguments = arguments
        self.options = options
    }
}

public struct WorkerSend: Sendable, Equatable {
    public var context: RequestContext
    public var shellID: UInt64
    public var commandID: UInt64
    public var stream: String
    public var endOfStream: Bool
    public var data: [UInt8]
    public init(context: RequestContext, shellID: UInt64, commandID: UInt64, stream: String, endOfStream: Bool, data: [UInt8]) {
        self.context = context
        self.shellID = shellID
        self.commandID = commandID
        self.stream = stream
        self.endOfStream = endOfStream
        self.data = data
    }
}

public struct WorkerReceive: Sendable, Equatable {
    public var context: RequestContext
    public var shellID: UInt64
    public var commandID: UInt64
    public var streams: [String]
    public init(context: RequestContext, shellID: UInt64, commandID: UInt64, streams: [String]) {
        self.context = context
        self.shellID = shellID
        self.commandID = commandID
        self.streams = streams
    }
}

public struct WorkerSignal: Sendable, Equatable {
    public var context: RequestContext
    public var shellID: UInt64
    public var commandID: UInt64
    public var code: String
    public init(context: RequestContext, shellID: UInt64, commandID: UInt64, code: String) {
        self.context = context
        self.shellID = shellID
        self.commandID = commandID
        self.code = code
    }
}

public struct WorkerConnect: Sendable, Equatable {
    public var context: RequestContext
    public var shellID: UInt64
    public var commandID: UInt64
    public var inboundConnectInformation: WSManData
    public init(context: RequestContext, shellID: UInt64, commandID: UInt64, inboundConnectInformation: WSManData) {
        self.context = context
        self.shellID = shellID
        self.commandID = commandID
        self.inboundConnectInformation = inboundConnectInformation
    }
}

public struct WorkerReady: Sendable, Equatable {
    public var errorCode: UInt32
    public var message: String
    public var exports: UInt32
    public var sandbox: [SandboxLayerReport]
    public init(errorCode: UInt32, message: String, exports: UInt32, sandbox: [SandboxLayerReport]) {
        self.errorCode = errorCode
        self.message = message
        self.exports = exports
        self.sandbox = sandbox
    }
}

public struct WorkerComplete: Sendable, Equatable {
    public var errorCode: UInt32
    public var extendedInformation: String?
    public init(errorCode: UInt32, extendedInformation: String?) {
        self.errorCode = errorCode
        self.extendedInformation = extendedInformation
    }
}

public struct WorkerShutdownDone: Sendable, Equatable {
    public var errorCode: UInt32
    public var threadsLeft: UInt32
    public init(errorCode: UInt32, threadsLeft: UInt32) {
        self.errorCode = errorCode
        self.threadsLeft = threadsLeft
    }
}

/// Bits of ``WorkerReady/exports`` (PROTOCOL.md §6).
public struct PluginExports: OptionSet, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let startup = PluginExports(rawValue: 1 << 0)
    public static let shutdown = PluginExports(rawValue: 1 << 1)
    public static let shell = PluginExports(rawValue: 1 << 2)
    public static let command = PluginExports(rawValue: 1 << 3)
    public static let send = PluginExports(rawValue: 1 << 4)
    public static let receive = PluginExports(rawValue: 1 << 5)
    public static let signal = PluginExports(rawValue: 1 << 6)
    public static let connect = PluginExports(rawValue: 1 << 7)
    public static let releaseShellContext = PluginExports(rawValue: 1 << 8)
    public static let releaseCommandContext = PluginExports(rawValue: 1 << 9)

    /// The entry points every plug-in must export, with their C names.
    public static let mandatory: [(PluginExports, String)] = [
        (.startup, "WSManPluginStartup"), (.shutdown, "WSManPluginShutdown"),
        (.shell, "WSManPluginShell"), (.command, "WSManPluginCommand"),
        (.send, "WSManPluginSend"), (.receive, "WSManPluginReceive"), (.signal, "WSManPluginSignal"),
    ]
}
