import AirlockPosix
import AirlockProtocol

/// What `airlockd` announced in `HELLO_ACK`.
public struct ServerInfo: Sendable, Hashable {
    /// The negotiated protocol version.
    public var protocolVersion: UInt16
    /// The largest frame the server accepts or sends, length prefix included.
    public var maxFrameSize: Int
    /// How many operations this connection may have in flight.
    public var maxOperations: Int
    /// `airlockd`'s version string.
    public var serverVersion: String
    /// This client's user id, as the server saw it (`SO_PEERCRED`).
    public var peerUserID: UInt32
    /// This client's user name, as the server resolved it.
    public var peerUserName: String
}

/// A connection to `airlockd`: create shells and reconnect to them, ask for status and
/// administer plug-ins.
///
/// Any number of operations run concurrently on one connection, from any task. A
/// connection stays open while it, or a ``Shell`` or ``Command`` made from it, is
/// referenced, until ``close()``.
///
/// ```swift
/// let connection = try await AirlockConnection.connect()
/// let shell = try await connection.createShell(ShellRequest(plugin: "shell"))
/// let command = try await shell.run("uname", arguments: ["-a"])
/// for try await chunk in command.output() { ... }
/// try await shell.close()
/// ```
public final class AirlockConnection: Sendable {
    let core: ConnectionCore

    /// What the server announced at connection time.
    public let server: ServerInfo

    /// The socket this connection was made to.
    public var socketPath: String { core.socketPath }

    /// The identity this connection acts for when a gateway asserted one; nil when the
    /// connection acts for its own process's user.
    public let assertedIdentity: AssertedIdentity?

    private init(core: ConnectionCore, server: ServerInfo, assertedIdentity: AssertedIdentity?) {
        self.core = core
        self.server = server
        self.assertedIdentity = assertedIdentity
    }

    deinit {
        core.close(reason: .closedByClient(socketPath: core.socketPath))
    }

    /// Connects to `airlockd` and performs the handshake.
    ///
    /// - Parameters:
    ///   - socketPath: the server's socket; by default ``defaultSocketPath()``.
    ///   - clientName: the name the server logs for this client.
    ///   - assertedIdentity: for gateways: the user this connection acts for
    ///     (`ASSERT_IDENTITY`). `airlockd` accepts it only when this process's user is
    ///     listed in its `TrustedGateways`.
    ///   - resultRingSize: the size of the result ring offered to `airlockd` with the
    ///     connection's first `RECEIVE` (PROTOCOL.md §5.6): shared memory into which it
    ///     writes large results, which then cost a memory copy on each side instead of a
    ///     socket send and receive. A multiple of 4,096 of at least 64 KiB; 0 offers none.
    ///     Its pages are allocated as results fill them, up to this size per connection
    ///     that streams. See ``usesResultRing``.
    /// - Throws: ``AirlockError`` of kind ``AirlockError/Kind/unreachable`` when nothing
    ///   accepts connections at `socketPath`, or ``AirlockError/Kind/protocolViolation``
    ///   when the server refuses the handshake or does not answer it within 10 seconds;
    ///   of kind ``AirlockError/Kind/operationFailed`` with code 5 (`ERROR_ACCESS_DENIED`)
    ///   when `airlockd` refuses the asserted identity.
    public static func connect(
        socketPath: String = defaultSocketPath(), clientName: String = "AirlockClient", assertedIdentity: AssertedIdentity? = nil,
        resultRingSize: Int = defaultResultRingSize
    ) async throws(AirlockError) -> AirlockConnection {
        guard resultRingSize == 0 || (resultRingSize >= ResultRingCursor.minimumSize && resultRingSize % ResultRingCursor.sizeGranularity == 0
            && resultRingSize <= Int(UInt32.max) - 4095) else {
            throw AirlockError(
                kind: .operationFailed, code: WSManError.invalidParameter,
                message: "resultRingSize \(resultRingSize) must be 0 or a multiple of 4096 of at least 65536 bytes")
        }
        let fd: FileDescriptor
        do {
            fd = try UnixSocket.connect(path: socketPath)
        } catch {
            throw .unreachable(socketPath: socketPath, error)
        }
        let core = ConnectionCore(fd: fd, socketPath: socketPath, resultRingSize: resultRingSize)
        do {
            try OSThread.start(name: "airlock-client") { core.readLoop() }
        } catch {
            try? Posix.close(fd)
            throw AirlockError(kind: .unreachable, code: WSManError.outOfMemory, message: "cannot start the connection's reader thread: \(error)")
        }
        let answer = await withTaskCancellationHandler {
            await core.handshake(clientName: clientName)
        } onCancel: {
            core.close(reason: .cancelledBeforeSending)
        }
        switch answer {
        case .success(let ack):
            let connection = AirlockConnection(core: core, server: ServerInfo(
                protocolVersion: ack.version, maxFrameSize: Int(ack.maxFrameSize), maxOperations: Int(ack.maxOperations),
                serverVersion: ack.serverVersion, peerUserID: ack.peerUID, peerUserName: ack.peerUserName), assertedIdentity: assertedIdentity)
            if let assertedIdentity {
                do {
                    _ = try await connection.completion(.assertIdentity(assertedIdentity.message))
                } catch {
                    core.close(reason: error)
                    throw error
                }
            }
            return connection
        case .failure(let error):
            core.close(reason: error)
            throw error
        }
    }

    /// Closes the connection. Operations in flight fail with an error of kind
    /// ``AirlockError/Kind/connectionLost``; `airlockd` closes this client's shells unless
    /// they were disconnected. Closing twice does nothing.
    public func close() {
        core.close(reason: .closedByClient(socketPath: core.socketPath))
    }

    /// Why the connection no longer works, or nil while it does.
    public var failure: AirlockError? { core.failure }

    /// The result ring offered by default: 4 MiB.
    public static let defaultResultRingSize = 4 << 20

    /// Whether `airlockd` writes this connection's large results into its result ring
    /// (see `resultRingSize` in ``connect(socketPath:clientName:assertedIdentity:resultRingSize:)``):
    /// false until the ring was offered, with the first output requested, and accepted.
    /// ``resultRingRefusal`` says why it is not used.
    public var usesResultRing: Bool { core.resultRingAccepted == true }

    /// Why the result ring is not used, when `airlockd` refused it (a server with
    /// `MaxResultRingkb` 0, say) or it could not be made; nil otherwise. Results then travel
    /// through the socket, as they do without a ring.
    public var resultRingRefusal: String? { core.resultRingRefusal }

    // MARK: - Shells

    /// Creates a shell (`CREATE_SHELL`): the plug-in's `WSManPluginShell` runs and reports
    /// the shell's context.
    public func createShell(_ request: ShellRequest) async throws(AirlockError) -> Shell {
        let message = Message.createShell(CreateShell(
            plugin: request.plugin, resourceURI: request.resourceURI, timeoutMs: milliseconds(request.timeout),
            idleTimeoutMs: milliseconds(request.idleTimeout), inputStreams: request.inputStreams,
            outputStreams: request.outputStreams, workingDirectory: request.workingDirectory,
            environment: request.environment, name: request.name, options: request.options,
            optionsMustUnderstand: request.optionsMustUnderstand, inboundShellInformation: request.shellInformation,
            locale: request.locale, dataLocale: request.dataLocale))
        switch try await core.perform(message).get() {
        case .shellCreated(let created):
            return Shell(connection: self, id: created.shellID, plugin: created.plugin, resourceURI: created.resourceURI)
        case let other:
            throw .unexpectedAnswer(other, to: .createShell)
        }
    }

    /// Creates a shell of the plug-in named `plugin` with default settings.
    public func createShell(plugin: String, timeout: Duration? = nil) async throws(AirlockError) -> Shell {
        try await createShell(ShellRequest(plugin: plugin, timeout: timeout))
    }

    /// Reattaches to a shell after ``Shell/disconnect(idleTimeout:)`` (`CONNECT`), from this
    /// or another connection of the same user.
    ///
    /// - Parameters:
    ///   - id: the shell's id (``Shell/id``).
    ///   - connectInformation: the `inboundConnectInformation` passed to the plug-in's
    ///     `WSManPluginConnect`.
    ///   - plugin: the plug-in's name, recorded in the returned shell's ``Shell/plugin``
    ///     (`CONNECT` does not report it).
    /// - Returns: the shell and the plug-in's connect response (the extended information of
    ///   its `OperationComplete`).
    public func connectShell(
        id: UInt64, connectInformation: WSManData = .none, plugin: String = "", timeout: Duration? = nil
    ) async throws(AirlockError) -> (Shell, extendedInformation: String?) {
        let message = Message.connect(ConnectRequest(
            shellID: id, commandID: 0, timeoutMs: milliseconds(timeout), inboundConnectInformation: connectInformation))
        let answer = try await core.perform(message, shellID: id).get()
        guard case .operationComplete(let complete) = answer else { throw .unexpectedAnswer(answer, to: .connect) }
        return (Shell(connection: self, id: id, plugin: plugin, resourceURI: ""), complete.extendedInformation)
    }

    // MARK: - Administration

    /// The supervisor's status as JSON text (`STATUS`); see ``statusReport(plugin:)`` for
    /// the decoded form.
    ///
    /// - Parameter plugin: one plug-in's name, or nil for everything.
    public func status(plugin: String? = nil) async throws(AirlockError) -> String {
        try await statusReply(.status(plugin: plugin ?? ""))
    }

    /// The registered plug-ins as JSON text (`LIST_PLUGINS`); see ``listPlugins()``.
    public func listPluginsJSON() async throws(AirlockError) -> String {
        try await statusReply(.listPlugins)
    }

    /// Stops the plug-in's worker (failing its operations) and starts a fresh one
    /// (`RESTART_PLUGIN`).
    public func restartPlugin(_ plugin: String) async throws(AirlockError) {
        _ = try await completion(.restartPlugin(plugin: plugin))
    }

    /// Stops the plug-in's worker (`STOP_PLUGIN`); the next operation starts it again.
    public func stopPlugin(_ plugin: String) async throws(AirlockError) {
        _ = try await completion(.stopPlugin(plugin: plugin))
    }

    /// Makes the supervisor re-read its configuration (`RELOAD`).
    ///
    /// - Returns: the supervisor's summary of what changed, when it gave one.
    @discardableResult
    public func reload() async throws(AirlockError) -> String? {
        try await completion(.reload).extendedInformation
    }

    /// Measures one round trip to the supervisor (`PING`/`PONG`).
    public func ping() async throws(AirlockError) -> Duration {
        let clock = ContinuousClock()
        let start = clock.now
        let token = UInt64(truncatingIfNeeded: start.hashValue)
        let answer = try await core.perform(.ping(token: token)).get()
        guard case .pong = answer else { throw .unexpectedAnswer(answer, to: .ping) }
        return clock.now - start
    }

    // MARK: - Blocking API

    /// One `PING`/`PONG` round trip that blocks the calling thread. For benchmarks and for
    /// threads that are not Swift tasks; never call it from async code.
    public func pingBlocking() throws(AirlockError) {
        let answer = try core.performBlocking(.ping(token: 1)).get()
        guard case .pong = answer else { throw .unexpectedAnswer(answer, to: .ping) }
    }

    /// Sends a `SIGNAL` and blocks the calling thread until it completes. For benchmarks and
    /// for threads that are not Swift tasks (signal handlers' helper threads); never call it
    /// from async code.
    ///
    /// - Parameters:
    ///   - commandID: the command, or 0 for the shell itself.
    public func signalBlocking(shellID: UInt64, commandID: UInt64, code: SignalCode, timeout: Duration? = nil) throws(AirlockError) {
        // Encoded straight into the connection's writer (no Message), and answered in place.
        let uri = code.uri
        let timeoutMs = milliseconds(timeout)
        let failure = core.performBlockingCompletion(request: .signal, shellID: shellID, commandID: commandID) { writer, id in
            ClientFrames.encodeSignal(into: &writer, operationID: id, shellID: shellID, commandID: commandID, timeoutMs: timeoutMs, code: uri)
        }
        if let failure { throw failure }
    }

    // MARK: - Helpers

    private func statusReply(_ message: Message) async throws(AirlockError) -> String {
        let answer = try await core.perform(message).get()
        guard case .statusReply(let json) = answer else { throw .unexpectedAnswer(answer, to: message.type) }
        return json
    }

    private func completion(_ message: Message) async throws(AirlockError) -> OperationComplete {
        let answer = try await core.perform(message).get()
        guard case .operationComplete(let complete) = answer else { throw .unexpectedAnswer(answer, to: message.type) }
        return complete
    }
}

/// A deadline in milliseconds for `timeoutMs`: 0 (the plug-in's default) for nil, otherwise
/// at least 1, rounded up, at most `UInt32.max`.
func milliseconds(_ duration: Duration?) -> UInt32 {
    guard let duration else { return 0 }
    let (seconds, attoseconds) = duration.components
    if seconds < 0 || (seconds == 0 && attoseconds <= 0) { return 1 }
    let whole = seconds.multipliedReportingOverflow(by: 1000)
    if whole.overflow || whole.partialValue >= Int64(UInt32.max) { return UInt32.max }
    let fraction = (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
    return UInt32(min(whole.partialValue + fraction, Int64(UInt32.max)))
}
