import AirlockProtocol

/// A shell of a plug-in: the context its `WSManPluginShell` reported. Commands run in it;
/// input and signals may also target the shell itself.
///
/// The shell lives on the server until ``close()``, until the plug-in ends it, or until
/// its connection closes (unless it was disconnected with ``disconnect(idleTimeout:)``).
/// When the server reports the shell closed (`SHELL_CLOSED`), ``closedNotice`` tells why,
/// and if that was an error, every operation still pending on the shell fails with it.
public final class Shell: Sendable {
    /// The connection the shell is used through.
    public let connection: AirlockConnection
    /// The shell's id, assigned by `airlockd` (the `shellId` of the protocol).
    public let id: UInt64
    /// The plug-in's name; empty for a shell obtained with
    /// ``AirlockConnection/connectShell(id:connectInformation:plugin:timeout:)`` without one.
    public let plugin: String
    /// The resource URI the shell was created for; empty for a reconnected shell.
    public let resourceURI: String

    let monitor: EndMonitor

    init(connection: AirlockConnection, id: UInt64, plugin: String, resourceURI: String) {
        self.connection = connection
        self.id = id
        self.plugin = plugin
        self.resourceURI = resourceURI
        self.monitor = connection.core.shellMonitor(id)
    }

    /// Why the server ended the shell (`SHELL_CLOSED`), or nil while it is open.
    public var closedNotice: EndNotice? { monitor.value }

    /// Runs a command (`RUN_COMMAND`): the plug-in's `WSManPluginCommand` gets
    /// `commandLine` and `arguments`. Read its output with ``Command/output(streams:timeout:)``.
    public func run(
        _ commandLine: String, arguments: [String] = [], options: [WSManOption] = [], timeout: Duration? = nil
    ) async throws(AirlockError) -> Command {
        let message = Message.runCommand(RunCommand(
            shellID: id, timeoutMs: milliseconds(timeout), commandLine: commandLine, arguments: arguments, options: options))
        let answer = try await connection.core.perform(message, shellID: id).get()
        guard case .commandCreated(let commandID) = answer else { throw .unexpectedAnswer(answer, to: .runCommand) }
        return Command(shell: self, id: commandID)
    }

    /// A handle for command `id` of this shell, for instance one started before a
    /// ``disconnect(idleTimeout:)`` and ``AirlockConnection/connectShell(id:connectInformation:plugin:timeout:)``.
    public func command(id: UInt64) -> Command {
        Command(shell: self, id: id)
    }

    /// Reattaches to one command of this shell (`CONNECT` with its command id).
    ///
    /// - Returns: the command and the plug-in's connect response.
    public func connectCommand(
        id commandID: UInt64, connectInformation: WSManData = .none, timeout: Duration? = nil
    ) async throws(AirlockError) -> (Command, extendedInformation: String?) {
        let message = Message.connect(ConnectRequest(
            shellID: id, commandID: commandID, timeoutMs: milliseconds(timeout), inboundConnectInformation: connectInformation))
        let answer = try await connection.core.perform(message, shellID: id, commandID: commandID).get()
        guard case .operationComplete(let complete) = answer else { throw .unexpectedAnswer(answer, to: .connect) }
        return (Command(shell: self, id: commandID), complete.extendedInformation)
    }

    /// Sends input to the shell itself (`SEND` with command id 0). Data larger than one
    /// frame is sent as several `SEND`s, one after the other.
    public func send(_ data: [UInt8], stream: String = "stdin", endOfStream: Bool = false, timeout: Duration? = nil) async throws(AirlockError) {
        try await sendInput(connection: connection, shellID: id, commandID: 0, data, stream: stream, endOfStream: endOfStream, timeout: timeout)
    }

    /// Receives the shell's own output (`RECEIVE` with command id 0): one operation whose
    /// results are yielded as they arrive; the sequence ends when the plug-in completes it.
    ///
    /// - Parameter streams: the streams wanted; empty for every output stream.
    public func output(streams: [String] = [], timeout: Duration? = nil) -> AsyncThrowingStream<OutputChunk, any Error> {
        connection.core.openStream(
            .receive(ReceiveOutput(shellID: id, commandID: 0, timeoutMs: milliseconds(timeout), streams: streams)),
            shellID: id, commandID: 0)
    }

    /// Signals the shell itself (`SIGNAL` with command id 0).
    public func signal(_ code: SignalCode, timeout: Duration? = nil) async throws(AirlockError) {
        let message = Message.signal(SignalRequest(shellID: id, commandID: 0, timeoutMs: milliseconds(timeout), code: code.uri))
        _ = try await connection.core.perform(message, shellID: id).get()
    }

    /// Detaches from the shell (`DISCONNECT`): it keeps running on the server for
    /// `idleTimeout` (nil: the plug-in's idle timeout), and any connection of the same user
    /// may reattach with ``AirlockConnection/connectShell(id:connectInformation:plugin:timeout:)``.
    public func disconnect(idleTimeout: Duration? = nil) async throws(AirlockError) {
        let message = Message.disconnect(DisconnectRequest(shellID: id, idleTimeoutMs: milliseconds(idleTimeout)))
        _ = try await connection.core.perform(message, shellID: id).get()
    }

    /// Closes the shell (`CLOSE_SHELL`): its commands are cancelled and the plug-in
    /// completes the Shell operation. Closing a shell the server already reported closed
    /// succeeds.
    public func close() async throws(AirlockError) {
        do {
            _ = try await connection.core.perform(.closeShell(shellID: id), shellID: id).get()
        } catch where error.kind == .operationFailed && monitor.value != nil
            && (error.code == WSManError.invalidSelectors || error.code == WSManError.shellAlreadyClosed) {
            // Already gone on the server's side.
        }
        connection.core.forgetShell(id)
    }
}

/// Sends `data` as one `SEND`, or as several when it does not fit in one frame (the
/// `endOfStream` flag goes with the last one).
func sendInput(
    connection: AirlockConnection, shellID: UInt64, commandID: UInt64, _ data: [UInt8],
    stream: String, endOfStream: Bool, timeout: Duration?
) async throws(AirlockError) {
    let chunkSize = sendChunkSize(connection: connection, stream: stream)
    if data.count <= chunkSize {
        let message = Message.send(SendInput(
            shellID: shellID, commandID: commandID, timeoutMs: milliseconds(timeout), stream: stream, endOfStream: endOfStream, data: data))
        _ = try await connection.core.perform(message, shellID: shellID, commandID: commandID).get()
        return
    }
    var offset = 0
    while offset < data.count {
        let end = min(offset + chunkSize, data.count)
        let message = Message.send(SendInput(
            shellID: shellID, commandID: commandID, timeoutMs: milliseconds(timeout), stream: stream,
            endOfStream: endOfStream && end == data.count, data: Array(data[offset..<end])))
        _ = try await connection.core.perform(message, shellID: shellID, commandID: commandID).get()
        offset = end
    }
}

/// The most input bytes one `SEND` frame carries on this connection.
func sendChunkSize(connection: AirlockConnection, stream: String) -> Int {
    // Header 16, shellId 8, commandId 8, timeoutMs 4, stream 4 + n, endOfStream 1, data count 4.
    max(1, connection.core.maxFrameSize - 45 - stream.utf8.count)
}
