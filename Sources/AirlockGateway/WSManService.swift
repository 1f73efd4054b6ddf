import AirlockClient
import Foundation
import Logging

/// An HTTP answer: status and SOAP body (written with the head in one buffer).
struct HTTPAnswer: Sendable {
    var status: Int
    var body: [UInt8]
}

/// The WinRS shell operations of WS-Management mapped onto ``AirlockClient``: Create,
/// Command, Send, Receive (long-polled), Signal and Delete, with WS-Man faults.
final class WSManService: Sendable {
    /// The most the gateway answers with, whatever a request's `w:MaxEnvelopeSize` says.
    let maximumEnvelopeSize: Int
    /// The Receive wait when a request gives no `w:OperationTimeout`.
    static let defaultOperationTimeout: Duration = .seconds(60)

    let pool: ConnectionPool
    let registry = ShellRegistry()
    private let logger: Logger

    init(pool: ConnectionPool, maximumEnvelopeSize: Int, logger: Logger) {
        self.pool = pool
        self.maximumEnvelopeSize = maximumEnvelopeSize
        self.logger = logger
    }

    /// Answers one request body for an authenticated user.
    func handle(body: Data, user: GatewayUser) async -> HTTPAnswer {
        let envelope: SOAPEnvelope
        do {
            envelope = try SOAPEnvelope.parse(body)
        } catch {
            return HTTPAnswer(status: 400, body: SOAPAnswer.fault(.malformed(error.reason), relatesTo: nil))
        }
        let request = WSManRequest(envelope)
        do {
            let (action, bytes) = try await perform(request, user: user)
            return HTTPAnswer(status: 200, body: SOAPAnswer.envelope(action: action, relatesTo: request.messageID, body: bytes))
        } catch {
            if error.code != WSManError.operationTimedOut {
                logger.info("fault", metadata: [
                    "user": "\(user.name)", "action": "\(request.action)", "code": "\(error.code)", "message": "\(error.message)",
                ])
            }
            return HTTPAnswer(status: error.httpStatus, body: SOAPAnswer.fault(error, relatesTo: request.messageID))
        }
    }

    /// Forgets the shells airlockd ended by itself (their plug-in closed them, their idle
    /// timeout ran out, their connection was lost) whose clients never came back for them,
    /// with their buffered output.
    func forgetEndedShells() async {
        for shell in registry.removeAll(where: \.hasEnded) {
            shell.closeAllCommands()
            await pool.shellDeleted(for: shell.owner)
            logger.debug("forgot a shell airlockd ended", metadata: ["user": "\(shell.owner.name)", "shell": "\(shell.id)"])
        }
    }

    /// Closes every shell (at shutdown).
    func closeAllShells() async {
        for shell in registry.removeAll() {
            shell.closeAllCommands()
            try? await shell.shell.close()
        }
    }

    // MARK: - Dispatch

    private typealias BodyWriter = @Sendable (inout XMLWriter) -> Void

    private func perform(_ request: WSManRequest, user: GatewayUser) async throws(WSManFault) -> (String, BodyWriter) {
        switch request.action {
        case WSManAction.create: return (WSManAction.create + "Response", try await create(request, user: user))
        case WSManAction.command: return (WSManAction.command + "Response", try await command(request, user: user))
        case WSManAction.send: return (WSManAction.send + "Response", try await send(request, user: user))
        case WSManAction.receive: return (WSManAction.receive + "Response", try await receive(request, user: user))
        case WSManAction.signal: return (WSManAction.signal + "Response", try await signal(request, user: user))
        case WSManAction.delete: return (WSManAction.delete + "Response", try await delete(request, user: user))
        default: throw .actionNotSupported(request.action)
        }
    }

    // MARK: - Create

    private func create(_ request: WSManRequest, user: GatewayUser) async throws(WSManFault) -> BodyWriter {
        guard let resourceURI = request.resourceURI, !resourceURI.isEmpty else {
            throw .invalidParameter("the request has no w:ResourceURI")
        }
        guard let shellElement = request.body.child(Namespace.shell, "Shell") else {
            throw .invalidParameter("the Create request has no rsp:Shell in its body")
        }
        var shellRequest = ShellRequest(plugin: "", resourceURI: resourceURI)
        if let streams = shellElement.childText(Namespace.shell, "InputStreams") {
            shellRequest.inputStreams = streams.split(separator: " ").map(String.init)
        }
        if let streams = shellElement.childText(Namespace.shell, "OutputStreams") {
            shellRequest.outputStreams = streams.split(separator: " ").map(String.init)
        }
        if let directory = shellElement.childText(Namespace.shell, "WorkingDirectory"), !directory.isEmpty {
            shellRequest.workingDirectory = directory
        }
        shellRequest.environment = (shellElement.child(Namespace.shell, "Environment")?.children(Namespace.shell, "Variable") ?? [])
            .compactMap { variable in variable.attribute("Name").map { EnvironmentVariable(name: $0, value: variable.text) } }
        if let name = shellElement.childText(Namespace.shell, "Name"), !name.isEmpty { shellRequest.name = name }
        if let idle = shellElement.childText(Namespace.shell, "IdleTimeOut"), !idle.isEmpty {
            guard let duration = XSDuration.parse(idle) else { throw .invalidParameter("rsp:IdleTimeOut \(idle) is not a duration") }
            shellRequest.idleTimeout = duration
        }
        shellRequest.options = request.options
        shellRequest.optionsMustUnderstand = request.optionsMustUnderstand
        if let locale = request.locale { shellRequest.locale = locale }
        if let dataLocale = request.dataLocale { shellRequest.dataLocale = dataLocale }

        let connection = try await connection(for: user)
        let shell: Shell
        do {
            shell = try await connection.createShell(shellRequest)
        } catch {
            throw WSManFault(error)
        }
        let gatewayShell = GatewayShell(id: newUUID(), owner: user, shell: shell)
        registry.add(gatewayShell)
        await pool.shellCreated(for: user)
        logger.debug("shell created", metadata: ["user": "\(user.name)", "shell": "\(gatewayShell.id)", "plugin": "\(shell.plugin)"])
        let shellID = gatewayShell.id
        let inputStreams = shellRequest.inputStreams.joined(separator: " ")
        let outputStreams = shellRequest.outputStreams.joined(separator: " ")
        let httpURL = user.httpURL
        let owner = user.name
        return { xml in
            xml.open("x:ResourceCreated")
            xml.element("a:Address", text: httpURL)
            xml.open("a:ReferenceParameters")
            xml.element("w:ResourceURI", text: resourceURI)
            xml.open("w:SelectorSet")
            xml.element("w:Selector", ["Name": "ShellId"], text: shellID)
            xml.close("w:SelectorSet")
            xml.close("a:ReferenceParameters")
            xml.close("x:ResourceCreated")
            xml.open("rsp:Shell")
            xml.element("rsp:ShellId", text: shellID)
            xml.element("rsp:ResourceUri", text: resourceURI)
            xml.element("rsp:Owner", text: owner)
            xml.element("rsp:InputStreams", text: inputStreams)
            xml.element("rsp:OutputStreams", text: outputStreams)
            xml.close("rsp:Shell")
        }
    }

    // MARK: - Command

    private func command(_ request: WSManRequest, user: GatewayUser) async throws(WSManFault) -> BodyWriter {
        let shell = try lookUpShell(request, user: user)
        guard let commandLine = request.body.child(Namespace.shell, "CommandLine") else {
            throw .invalidParameter("the Command request has no rsp:CommandLine in its body")
        }
        let executable = commandLine.child(Namespace.shell, "Command")?.text ?? ""
        let arguments = commandLine.children(Namespace.shell, "Arguments").map(\.text)
        let command: Command
        do {
            command = try await shell.shell.run(executable, arguments: arguments, options: request.options)
        } catch {
            throw WSManFault(error)
        }
        var commandID = newUUID()
        if let requested = commandLine.attribute("CommandId")?.uppercased(), !requested.isEmpty, shell.command(requested) == nil {
            commandID = requested
        }
        let output = CommandOutputBuffer()
        output.startPump(command: command)
        shell.addCommand(GatewayCommand(id: commandID, command: command, output: output))
        let id = commandID
        return { xml in
            xml.open("rsp:CommandResponse")
            xml.element("rsp:CommandId", text: id)
            xml.close("rsp:CommandResponse")
        }
    }

    // MARK: - Send

    private func send(_ request: WSManRequest, user: GatewayUser) async throws(WSManFault) -> BodyWriter {
        let shell = try lookUpShell(request, user: user)
        guard let sendElement = request.body.child(Namespace.shell, "Send") else {
            throw .invalidParameter("the Send request has no rsp:Send in its body")
        }
        for stream in sendElement.children(Namespace.shell, "Stream") {
            guard let commandID = stream.attribute("CommandId") else {
                throw .invalidParameter("rsp:Stream has no CommandId")
            }
            guard let command = shell.command(commandID) else { throw .unknownCommand(commandID, shell: shell.id) }
            let text = stream.text.trimmingCharacters(in: .whitespacesAndNewlines)
            guard let data = Data(base64Encoded: text, options: .ignoreUnknownCharacters) else {
                throw .invalidParameter("the input of rsp:Stream is not base64")
            }
            do {
                try await command.command.send(
                    Array(data), stream: stream.attribute("Name") ?? "stdin", endOfStream: isTrue(stream.attribute("End")))
            } catch {
                throw WSManFault(error)
            }
        }
        return { xml in xml.open("rsp:SendResponse", selfClosing: true) }
    }

    // MARK: - Receive

    private func receive(_ request: WSManRequest, user: GatewayUser) async throws(WSManFault) -> BodyWriter {
        let shell = try lookUpShell(request, user: user)
        guard let desired = request.body.child(Namespace.shell, "Receive")?.child(Namespace.shell, "DesiredStream") else {
            throw .invalidParameter("the Receive request has no rsp:Receive/rsp:DesiredStream in its body")
        }
        guard let commandID = desired.attribute("CommandId") else {
            throw .invalidParameter("receiving the shell's own output is not supported: rsp:DesiredStream has no CommandId")
        }
        guard let command = shell.command(commandID) else { throw .unknownCommand(commandID, shell: shell.id) }
        let streamNames = desired.text.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" }).map(String.init)
        let envelopeSize = min(request.maxEnvelopeSize ?? maximumEnvelopeSize, maximumEnvelopeSize)
        let rawBudget = max(512, (envelopeSize - 4096) * 3 / 4)
        let timeout = request.operationTimeout ?? Self.defaultOperationTimeout
        let delivery = await command.output.receive(
            maximumBytes: rawBudget, streams: streamNames.isEmpty ? nil : Set(streamNames), timeout: timeout)
        switch delivery {
        case .timedOut:
            throw .timedOut()
        case .failed(let error):
            shell.removeCommand(command.id)
            throw WSManFault(error)
        case .output(let pieces, let exitCode):
            let id = command.id
            return { xml in
                xml.open("rsp:ReceiveResponse")
                for piece in pieces {
                    xml.open("rsp:Stream", ["Name": piece.stream, "CommandId": id])
                    xml.trustedASCII(Data(piece.bytes).base64EncodedData())
                    xml.close("rsp:Stream")
                }
                if let exitCode {
                    for name in streamNames {
                        xml.open("rsp:Stream", ["Name": name, "CommandId": id, "End": "true"], selfClosing: true)
                    }
                    xml.open("rsp:CommandState", ["CommandId": id, "State": CommandState.done.uri])
                    xml.element("rsp:ExitCode", text: String(Int32(bitPattern: exitCode)))
                    xml.close("rsp:CommandState")
                } else {
                    xml.open("rsp:CommandState", ["CommandId": id, "State": CommandState.running.uri], selfClosing: true)
                }
                xml.close("rsp:ReceiveResponse")
            }
        }
    }

    // MARK: - Signal

    private func signal(_ request: WSManRequest, user: GatewayUser) async throws(WSManFault) -> BodyWriter {
        let shell = try lookUpShell(request, user: user)
        guard let signalElement = request.body.child(Namespace.shell, "Signal") else {
            throw .invalidParameter("the Signal request has no rsp:Signal in its body")
        }
        let code = signalElement.childText(Namespace.shell, "Code") ?? ""
        let signal = Self.signalCode(code)
        guard let commandID = signalElement.attribute("CommandId") else {
            do {
                try await shell.shell.signal(signal)
            } catch {
                throw WSManFault(error)
            }
            return Self.signalResponse
        }
        guard let command = shell.command(commandID) else { throw .unknownCommand(commandID, shell: shell.id) }
        if !command.output.isDone {
            do {
                try await command.command.signal(signal)
            } catch where command.output.isDone || signal == .terminate {
                // The command ended meanwhile: a signal after Done succeeds.
            } catch {
                throw WSManFault(error)
            }
        }
        if signal == .terminate {
            shell.removeCommand(command.id)
            command.output.close()
        }
        return Self.signalResponse
    }

    private static let signalResponse: BodyWriter = { xml in xml.open("rsp:SignalResponse", selfClosing: true) }

    /// The signal for a code URI, compared without regard to case (pypsrp sends `Terminate`).
    static func signalCode(_ code: String) -> SignalCode {
        switch code.lowercased() {
        case SignalCode.terminate.uri.lowercased(): .terminate
        case SignalCode.ctrlC.uri.lowercased(): .ctrlC
        case SignalCode.ctrlBreak.uri.lowercased(): .ctrlBreak
        default: .custom(code)
        }
    }

    // MARK: - Delete

    private func delete(_ request: WSManRequest, user: GatewayUser) async throws(WSManFault) -> BodyWriter {
        // A shell that already ended on airlockd's side is simply forgotten.
        guard let shell = request.selectors["ShellId"].flatMap({ registry.shell($0, for: user) }) else {
            _ = try lookUpShell(request, user: user)
            return { _ in }
        }
        registry.remove(shell.id)
        shell.closeAllCommands()
        await pool.shellDeleted(for: shell.owner)
        do {
            try await shell.shell.close()
        } catch where error.kind == .connectionLost || shell.shell.closedNotice != nil {
            // airlockd closed the shell already (with the connection, or the plug-in ended it).
        } catch {
            throw WSManFault(error)
        }
        return { _ in }
    }

    // MARK: - Helpers

    private func lookUpShell(_ request: WSManRequest, user: GatewayUser) throws(WSManFault) -> GatewayShell {
        guard let id = request.selectors["ShellId"] else {
            throw WSManFault(
                isSenderFault: true, subcode: "InvalidSelectors", code: WSManError.invalidSelectors,
                message: "The request has no ShellId selector.")
        }
        guard let shell = registry.shell(id, for: user) else { throw .unknownShell(id) }
        // Ended on airlockd's side (the plug-in closed it, its idle timeout, a lost
        // connection): forget it and say why, once; later requests get InvalidSelectors.
        if shell.hasEnded {
            registry.remove(shell.id)
            shell.closeAllCommands()
            Task { [pool, owner = shell.owner] in await pool.shellDeleted(for: owner) }
            if let error = shell.shell.closedNotice?.error ?? shell.shell.connection.failure { throw WSManFault(error) }
            throw .unknownShell(id)
        }
        return shell
    }

    private func connection(for user: GatewayUser) async throws(WSManFault) -> AirlockConnection {
        do {
            return try await pool.connection(for: user)
        } catch {
            throw WSManFault(error)
        }
    }
}
