/// The type code of a frame (PROTOCOL.md §5).
public enum MessageType: UInt16, Sendable, CaseIterable {
    case hello = 0x0001
    case helloAck = 0x0002
    case ping = 0x0003
    case pong = 0x0004
    case error = 0x000F

    case createShell = 0x0101
    case runCommand = 0x0102
    case send = 0x0103
    case receive = 0x0104
    case signal = 0x0105
    case connect = 0x0106
    case disconnect = 0x0107
    case closeShell = 0x0108
    case cancel = 0x0109
    case assertIdentity = 0x010A
    case openResultRing = 0x010B
    case releaseResultRing = 0x010C

    case status = 0x0181
    case listPlugins = 0x0182
    case restartPlugin = 0x0183
    case stopPlugin = 0x0184
    case reload = 0x0185

    case shellCreated = 0x0201
    case commandCreated = 0x0202
    case receiveResult = 0x0203
    case operationComplete = 0x0204
    case shellClosed = 0x0205
    case commandEnded = 0x0206
    case receiveResultInRing = 0x0207
    case statusReply = 0x0281

    case workerStart = 0x0301
    case workerShutdown = 0x0302
    case workerCancel = 0x0303
    case workerCredit = 0x0304
    case workerShell = 0x0311
    case workerCommand = 0x0312
    case workerSend = 0x0313
    case workerReceive = 0x0314
    case workerSignal = 0x0315
    case workerConnect = 0x0316
    case workerReady = 0x0381
    case workerContext = 0x0382
    case workerResult = 0x0383
    case workerComplete = 0x0384
    case workerBreach = 0x0385
    case workerShutdownDone = 0x0386
    case workerFatal = 0x0387
    case workerReportCompletion = 0x0388

    /// The protocol name, as in PROTOCOL.md (`CREATE_SHELL`, `W_READY`, ...).
    public var wireName: String {
        switch self {
        case .hello: "HELLO"
        case .helloAck: "HELLO_ACK"
        case .ping: "PING"
        case .pong: "PONG"
        case .error: "ERROR"
        case .createShell: "CREATE_SHELL"
        case .runCommand: "RUN_COMMAND"
        case .send: "SEND"
        case .receive: "RECEIVE"
        case .signal: "SIGNAL"
        case .connect: "CONNECT"
        case .disconnect: "DISCONNECT"
        case .closeShell: "CLOSE_SHELL"
        case .cancel: "CANCEL"
        case .assertIdentity: "ASSERT_IDENTITY"
        case .openResultRing: "OPEN_RESULT_RING"
        case .releaseResultRing: "RELEASE_RESULT_RING"
        case .status: "STATUS"
        case .listPlugins: "LIST_PLUGINS"
        case .restartPlugin: "RESTART_PLUGIN"
        case .stopPlugin: "STOP_PLUGIN"
        case .reload: "RELOAD"
        case .shellCreated: "SHELL_CREATED"
        case .commandCreated: "COMMAND_CREATED"
        case .receiveResult: "RECEIVE_RESULT"
        case .operationComplete: "OPERATION_COMPLETE"
        case .shellClosed: "SHELL_CLOSED"
        case .commandEnded: "COMMAND_ENDED"
        case .receiveResultInRing: "RECEIVE_RESULT_IN_RING"
        case .statusReply: "STATUS_REPLY"
        case .workerStart: "W_START"
        case .workerShutdown: "W_SHUTDOWN"
        case .workerCancel: "W_CANCEL"
        case .workerCredit: "W_CREDIT"
        case .workerShell: "W_SHELL"
        case .workerCommand: "W_COMMAND"
        case .workerSend: "W_SEND"
        case .workerReceive: "W_RECEIVE"
        case .workerSignal: "W_SIGNAL"
        case .workerConnect: "W_CONNECT"
        case .workerReady: "W_READY"
        case .workerContext: "W_CONTEXT"
        case .workerResult: "W_RESULT"
        case .workerComplete: "W_COMPLETE"
        case .workerBreach: "W_BREACH"
        case .workerShutdownDone: "W_SHUTDOWN_DONE"
        case .workerFatal: "W_FATAL"
        case .workerReportCompletion: "W_REPORT_COMPLETION"
        }
    }
}

/// Every message of protocol version 1, with its payload.
public enum Message: Sendable, Equatable {
    case hello(Hello)
    case helloAck(HelloAck)
    case ping(token: UInt64)
    case pong(token: UInt64)
    case error(ErrorReport)

    case createShell(CreateShell)
    case runCommand(RunCommand)
    case send(SendInput)
    case receive(ReceiveOutput)
    case signal(SignalRequest)
    case connect(ConnectRequest)
    case disconnect(DisconnectRequest)
    case closeShell(shellID: UInt64)
    case cancel
    case assertIdentity(AssertIdentity)
    /// Offers the server a result ring of `size` bytes; the memory file travels with the
    /// frame (`SCM_RIGHTS`, PROTOCOL.md §5.6).
    case openResultRing(size: UInt32)
    /// Every result-ring byte before `position` may be reused (PROTOCOL.md §5.6).
    case releaseResultRing(position: UInt64)

    case status(plugin: String)
    case listPlugins
    case restartPlugin(plugin: String)
    case stopPlugin(plugin: String)
    case reload

    case shellCreated(ShellCreated)
    case commandCreated(commandID: UInt64)
    case receiveResult(ReceiveResult)
    case operationComplete(OperationComplete)
    case shellClosed(ShellClosed)
    case commandEnded(CommandEnded)
    case receiveResultInRing(RingReceiveResult)
    case statusReply(json: String)

    case workerStart(WorkerStart)
    case workerShutdown(WorkerShutdown)
    case workerCancel
    case workerCredit(bytes: UInt32)
    case workerShell(WorkerShell)
    case workerCommand(WorkerCommand)
    case workerSend(WorkerSend)
    case workerReceive(WorkerReceive)
    case workerSignal(WorkerSignal)
    case workerConnect(WorkerConnect)
    case workerReady(WorkerReady)
    case workerContext
    case workerResult(ReceiveResult)
    case workerComplete(WorkerComplete)
    case workerBreach(message: String)
    case workerShutdownDone(WorkerShutdownDone)
    case workerFatal(message: String)
    case workerReportCompletion(flags: UInt32)

    /// The type code this message is sent with.
    public var type: MessageType {
        switch self {
        case .hello: .hello
        case .helloAck: .helloAck
        case .ping: .ping
        case .pong: .pong
        case .error: .error
        case .createShell: .createShell
        case .runCommand: .runCommand
        case .send: .send
        case .receive: .receive
        case .signal: .signal
        case .connect: .connect
        case .disconnect: .disconnect
        case .closeShell: .closeShell
        case .cancel: .cancel
        case .assertIdentity: .assertIdentity
        case .openResultRing: .openResultRing
        case .releaseResultRing: .releaseResultRing
        case .status: .status
        case .listPlugins: .listPlugins
        case .restartPlugin: .restartPlugin
        case .stopPlugin: .stopPlugin
        case .reload: .reload
        case .shellCreated: .shellCreated
        case .commandCreated: .commandCreated
        case .receiveResult: .receiveResult
        case .operationComplete: .operationComplete
        case .shellClosed: .shellClosed
        case .commandEnded: .commandEnded
        case .receiveResultInRing: .receiveResultInRing
        case .statusReply: .statusReply
        case .workerStart: .workerStart
        case .workerShutdown: .workerShutdown
        case .workerCancel: .workerCancel
        case .workerCredit: .workerCredit
        case .workerShell: .workerShell
        case .workerCommand: .workerCommand
        case .workerSend: .workerSend
        case .workerReceive: .workerReceive
        case .workerSignal: .workerSignal
        case .workerConnect: .workerConnect
        case .workerReady: .workerReady
        case .workerContext: .workerContext
        case .workerResult: .workerResult
        case .workerComplete: .workerComplete
        case .workerBreach: .workerBreach
        case .workerShutdownDone: .workerShutdownDone
        case .workerFatal: .workerFatal
        case .workerReportCompletion: .workerReportCompletion
        }
    }

    /// Appends the payload (no header).
    public func encodePayload(to w: inout ByteWriter) {
        switch self {
        case .hello(let m):
            w.u32(m.magic); w.u16(m.minVersion); w.u16(m.maxVersion); w.str(m.clientName)
        case .helloAck(let m):
            w.u16(m.version); w.u32(m.maxFrameSize); w.u32(m.maxOperations); w.str(m.serverVersion)
            w.u32(m.peerUID); w.str(m.peerUserName)
        case .ping(let token), .pong(let token):
            w.u64(token)
        case .error(let m):
            w.u32(m.errorCode); w.str(m.message)
        case .createShell(let m):
            w.str(m.plugin); w.str(m.resourceURI); w.u32(m.timeoutMs); w.u32(m.idleTimeoutMs)
            w.strings(m.inputStreams); w.strings(m.outputStreams); w.optstr(m.workingDirectory)
            w.environment(m.environment); w.optstr(m.name); w.options(m.options); w.bool(m.optionsMustUnderstand)
            m.inboundShellInformation.encode(to: &w); w.str(m.locale); w.str(m.dataLocale)
        case .runCommand(let m):
            w.u64(m.shellID); w.u32(m.timeoutMs); w.str(m.commandLine); w.strings(m.arguments); w.options(m.options)
        case .send(let m):
            w.u64(m.shellID); w.u64(m.commandID); w.u32(m.timeoutMs); w.str(m.stream); w.bool(m.endOfStream); w.blob(m.data)
        case .receive(let m):
            w.u64(m.shellID); w.u64(m.commandID); w.u32(m.timeoutMs); w.strings(m.streams)
        case .signal(let m):
            w.u64(m.shellID); w.u64(m.commandID); w.u32(m.timeoutMs); w.str(m.code)
        case .connect(let m):
            w.u64(m.shellID); w.u64(m.commandID); w.u32(m.timeoutMs); m.inboundConnectInformation.encode(to: &w)
        case .disconnect(let m):
            w.u64(m.shellID); w.u32(m.idleTimeoutMs)
        case .closeShell(let shellID):
            w.u64(shellID)
        case .assertIdentity(let m):
            w.str(m.userName); w.str(m.authenticationMechanism); w.str(m.httpURL); w.u32(m.flags)
        case .openResultRing(let size):
            w.u32(size)
        case .releaseResultRing(let position):
            w.u64(position)
        case .receiveResultInRing(let m):
            w.u32(m.flags); w.optstr(m.stream); w.u64(m.position); w.u32(m.length); w.optstr(m.commandState); w.u32(m.exitCode)
        case .cancel, .listPlugins, .reload, .workerCancel, .workerContext:
            break
        case .status(let plugin), .restartPlugin(let plugin), .stopPlugin(let plugin):
            w.str(plugin)
        case .shellCreated(let m):
            w.u64(m.shellID); w.str(m.plugin); w.str(m.resourceURI)
        case .commandCreated(let commandID):
            w.u64(commandID)
        case .receiveResult(let m), .workerResult(let m):
            w.u32(m.flags); w.optstr(m.stream); m.streamResult.encode(to: &w); w.optstr(m.commandState); w.u32(m.exitCode)
        case .operationComplete(let m):
            w.u32(m.errorCode); w.optstr(m.extendedInformation); w.str(m.message)
        case .shellClosed(let m):
            w.u64(m.shellID); w.u32(m.errorCode); w.optstr(m.extendedInformation); w.str(m.message)
        case .commandEnded(let m):
            w.u64(m.shellID); w.u64(m.commandID); w.u32(m.errorCode); w.optstr(m.extendedInformation); w.str(m.message)
        case .statusReply(let json):
            w.str(json)
        case .workerStart(let m):
            w.str(m.plugin); w.str(m.libraryPath); w.str(m.applicationIdentification); w.optstr(m.extraInfo)
            w.u32(m.startupFlags); w.u32(m.maxEnvelopeSize); w.u32(m.outputWindowBytes); w.bool(m.dropOutput)
            w.list(m.configuration) { w, c in w.u32(c.flag); c.value.encode(to: &w) }
            w.blob(m.sandboxProfile)
        case .workerShutdown(let m):
            w.u32(m.reason); w.u32(m.graceMs)
        case .workerCredit(let bytes):
            w.u32(bytes)
        case .workerShell(let m):
            m.context.encode(to: &w); w.u64(m.shellID); w.u32(m.idleTimeoutMs)
            w.strings(m.inputStreams); w.strings(m.outputStreams); w.optstr(m.workingDirectory)
            w.environment(m.environment); w.optstr(m.name); w.options(m.options); w.bool(m.optionsMustUnderstand)
            m.inboundShellInformation.encode(to: &w)
        case .workerCommand(let m):
            m.context.encode(to: &w); w.u64(m.shellID); w.u64(m.commandID); w.str(m.commandLine)
            w.strings(m.arguments); w.options(m.options)
        case .workerSend(let m):
            m.context.encode(to: &w); w.u64(m.shellID); w.u64(m.commandID); w.str(m.stream); w.bool(m.endOfStream); w.blob(m.data)
        case .workerReceive(let m):
            m.context.encode(to: &w); w.u64(m.shellID); w.u64(m.commandID); w.strings(m.streams)
        case .workerSignal(let m):
            m.context.encode(to: &w); w.u64(m.shellID); w.u64(m.commandID); w.str(m.code)
        case .workerConnect(let m):
            m.context.encode(to: &w); w.u64(m.shellID); w.u64(m.commandID); m.inboundConnectInformation.encode(to: &w)
        case .workerReady(let m):
            w.u32(m.errorCode); w.str(m.message); w.u32(m.exports)
            w.list(m.sandbox) { w, l in w.str(l.name); w.str(l.state) }
        case .workerComplete(let m):
            w.u32(m.errorCode); w.optstr(m.extendedInformation)
        case .workerBreach(let message), .workerFatal(let message):
            w.str(message)
        case .workerShutdownDone(let m):
            w.u32(m.errorCode); w.u32(m.threadsLeft)
        case .workerReportCompletion(let flags):
            w.u32(flags)
        }
    }

    /// Decodes a payload of the given type; the reader must be consumed exactly.
    public static func decode(type: MessageType, from r: inout ByteReader) throws(ProtocolError) -> Message {
        let message: Message
        switch type {
        case .hello:
            message = .hello(Hello(magic: try r.u32("magic"), minVersion: try r.u16("minVersion"), maxVersion: try r.u16("maxVersion"), clientName: try r.str("clientName")))
        case .helloAck:
            message = .helloAck(HelloAck(
                version: try r.u16("version"), maxFrameSize: try r.u32("maxFrameSize"), maxOperations: try r.u32("maxOperations"),
                serverVersion: try r.str("serverVersion"), peerUID: try r.u32("peerUID"), peerUserName: try r.str("peerUserName")))
        case .ping: message = .ping(token: try r.u64("token"))
        case .pong: message = .pong(token: try r.u64("token"))
        case .error: message = .error(ErrorReport(errorCode: try r.u32("errorCode"), message: try r.str("message")))
        case .createShell:
            message = .createShell(CreateShell(
                plugin: try r.str("plugin"), resourceURI: try r.str("resourceUri"), timeoutMs: try r.u32("timeoutMs"),
                idleTimeoutMs: try r.u32("idleTimeoutMs"), inputStreams: try r.strings("inputStreams"),
                outputStreams: try r.strings("outputStreams"), workingDirectory: try r.optstr("workingDirectory"),
                environment: try r.environment(), name: try r.optstr("name"), options: try r.options(),
                optionsMustUnderstand: try r.bool("optionsMustUnderstand"), inboundShellInformation: try WSManData(from: &r),
                locale: try r.str("locale"), dataLocale: try r.str("dataLocale")))
        case .runCommand:
            message = .runCommand(RunCommand(
                shellID: try r.u64("shellId"), timeoutMs: try r.u32("timeoutMs"), commandLine: try r.str("commandLine"),
                arguments: try r.strings("arguments"), options: try r.options()))
        case .send:
            message = .send(SendInput(
                shellID: try r.u64("shellId"), commandID: try r.u64("commandId"), timeoutMs: try r.u32("timeoutMs"),
                stream: try r.str("stream"), endOfStream: try r.bool("endOfStream"), data: try r.blob("data")))
        case .receive:
            message = .receive(ReceiveOutput(
                shellID: try r.u64("shellId"), commandID: try r.u64("commandId"), timeoutMs: try r.u32("timeoutMs"),
                streams: try r.strings("streams")))
        case .signal:
            message = .signal(SignalRequest(
                shellID: try r.u64("shellId"), commandID: try r.u64("commandId"), timeoutMs: try r.u32("timeoutMs"), code: try r.str("code")))
        case .connect:
            message = .connect(ConnectRequest(
                shellID: try r.u64("shellId"), commandID: try r.u64("commandId"), timeoutMs: try r.u32("timeoutMs"),
                inboundConnectInformation: try WSManData(from: &r)))
        case .disconnect:
            message = .disconnect(DisconnectRequest(shellID: try r.u64("shellId"), idleTimeoutMs: try r.u32("idleTimeoutMs")))
        case .closeShell: message = .closeShell(shellID: try r.u64("shellId"))
        case .cancel: message = .cancel
        case .assertIdentity:
            message = .assertIdentity(AssertIdentity(
                userName: try r.str("userName"), authenticationMechanism: try r.str("authenticationMechanism"),
                httpURL: try r.str("httpUrl"), flags: try r.u32("flags")))
        case .openResultRing: message = .openResultRing(size: try r.u32("size"))
        case .releaseResultRing: message = .releaseResultRing(position: try r.u64("position"))
        case .receiveResultInRing:
            message = .receiveResultInRing(RingReceiveResult(
                flags: try r.u32("flags"), stream: try r.optstr("stream"), position: try r.u64("position"),
                length: try r.u32("length"), commandState: try r.optstr("commandState"), exitCode: try r.u32("exitCode")))
        case .status: message = .status(plugin: try r.str("plugin"))
        case .listPlugins: message = .listPlugins
        case .restartPlugin: message = .restartPlugin(plugin: try r.str("plugin"))
        case .stopPlugin: message = .stopPlugin(plugin: try r.str("plugin"))
        case .reload: message = .reload
        case .shellCreated:
            message = .shellCreated(ShellCreated(shellID: try r.u64("shellId"), plugin: try r.str("plugin"), resourceURI: try r.str("resourceUri")))
        case .commandCreated: message = .commandCreated(commandID: try r.u64("commandId"))
        case .receiveResult: message = .receiveResult(try decodeReceiveResult(&r))
        case .operationComplete:
            message = .operationComplete(OperationComplete(
                errorCode: try r.u32("errorCode"), extendedInformation: try r.optstr("extendedInformation"), message: try r.str("message")))
        case .shellClosed:
            message = .shellClosed(ShellClosed(
                shellID: try r.u64("shellId"), errorCode: try r.u32("errorCode"),
                extendedInformation: try r.optstr("extendedInformation"), message: try r.str("message")))
        case .commandEnded:
            message = .commandEnded(CommandEnded(
                shellID: try r.u64("shellId"), commandID: try r.u64("commandId"), errorCode: try r.u32("errorCode"),
                extendedInformation: try r.optstr("extendedInformation"), message: try r.str("message")))
        case .statusReply: message = .statusReply(json: try r.str("json"))
        case .workerStart:
            message = .workerStart(WorkerStart(
                plugin: try r.str("plugin"), libraryPath: try r.str("libraryPath"),
                applicationIdentification: try r.str("applicationIdentification"), extraInfo: try r.optstr("extraInfo"),
                startupFlags: try r.u32("startupFlags"), maxEnvelopeSize: try r.u32("maxEnvelopeSize"),
                outputWindowBytes: try r.u32("outputWindowBytes"), dropOutput: try r.bool("dropOutput"),
                configuration: try r.list("configuration", minimumElementSize: 5) { (r: inout ByteReader) throws(ProtocolError) in
                    ConfigurationValue(flag: try r.u32("config.flag"), value: try WSManData(from: &r))
                },
                sandboxProfile: try r.blob("sandboxProfile")))
        case .workerShutdown:
            message = .workerShutdown(WorkerShutdown(reason: try r.u32("reason"), graceMs: try r.u32("graceMs")))
        case .workerCancel: message = .workerCancel
        case .workerCredit: message = .workerCredit(bytes: try r.u32("bytes"))
        case .workerShell:
            message = .workerShell(WorkerShell(
                context: try RequestContext(from: &r), shellID: try r.u64("shellId"), idleTimeoutMs: try r.u32("idleTimeoutMs"),
                inputStreams: try r.strings("inputStreams"), outputStreams: try r.strings("outputStreams"),
                workingDirectory: try r.optstr("workingDirectory"), environment: try r.environment(), name: try r.optstr("name"),
                options: try r.options(), optionsMustUnderstand: try r.bool("optionsMustUnderstand"),
                inboundShellInformation: try WSManData(from: &r)))
        case .workerCommand:
            message = .workerCommand(WorkerCommand(
                context: try RequestContext(from: &r), shellID: try r.u64("shellId"), commandID: try r.u64("commandId"),
                commandLine: try r.str("commandLine"), arguments: try r.strings("arguments"), options: try r.options()))
        case .workerSend:
            message = .workerSend(WorkerSend(
                context: try RequestContext(from: &r), shellID: try r.u64("shellId"), commandID: try r.u64("commandId"),
                stream: try r.str("stream"), endOfStream: try r.bool("endOfStream"), data: try r.blob("data")))
        case .workerReceive:
            message = .workerReceive(WorkerReceive(
                context: try RequestContext(from: &r), shellID: try r.u64("shellId"), commandID: try r.u64("commandId"),
                streams: try r.strings("streams")))
        case .workerSignal:
            message = .workerSignal(WorkerSignal(
                context: try RequestContext(from: &r), shellID: try r.u64("shellId"), commandID: try r.u64("commandId"),
                code: try r.str("code")))
        case .workerConnect:
            message = .workerConnect(WorkerConnect(
                context: try RequestContext(from: &r), shellID: try r.u64("shellId"), commandID: try r.u64("commandId"),
                inboundConnectInformation: try WSManData(from: &r)))
        case .workerReady:
            message = .workerReady(WorkerReady(
                errorCode: try r.u32("errorCode"), message: try r.str("message"), exports: try r.u32("exports"),
                sandbox: try r.list("sandbox", minimumElementSize: 8) { (r: inout ByteReader) throws(ProtocolError) in
                    SandboxLayerReport(name: try r.str("layer.name"), state: try r.str("layer.state"))
                }))
        case .workerContext: message = .workerContext
        case .workerResult: message = .workerResult(try decodeReceiveResult(&r))
        case .workerComplete:
            message = .workerComplete(WorkerComplete(errorCode: try r.u32("errorCode"), extendedInformation: try r.optstr("extendedInformation")))
        case .workerBreach: message = .workerBreach(message: try r.str("message"))
        case .workerShutdownDone:
            message = .workerShutdownDone(WorkerShutdownDone(errorCode: try r.u32("errorCode"), threadsLeft: try r.u32("threadsLeft")))
        case .workerFatal: message = .workerFatal(message: try r.str("message"))
        case .workerReportCompletion: message = .workerReportCompletion(flags: try r.u32("flags"))
        }
        try r.expectEnd(type.wireName)
        return message
    }

    private static func decodeReceiveResult(_ r: inout ByteReader) throws(ProtocolError) -> ReceiveResult {
        ReceiveResult(
            flags: try r.u32("flags"), stream: try r.optstr("stream"), streamResult: try WSManData(from: &r),
            commandState: try r.optstr("commandState"), exitCode: try r.u32("exitCode"))
    }
}
