import AirlockPosix
import AirlockProtocol
import Glibc

/// Client requests: the handshake, shell operations, and administration.
extension Supervisor {
    func handleClientFrame(_ frame: Frame, from connection: ClientConnection) {
        if connection.state == .awaitingHello {
            handleHello(frame, from: connection)
            return
        }
        let op = frame.operationID
        switch frame.message {
        case .ping(let token):
            queue(Frame(operationID: op, flags: .final, message: .pong(token: token)), on: connection)
            return
        case .cancel:
            cancelClientOperation(op, of: connection)
            return
        case .releaseResultRing(let position):
            guard op == 0 else {
                closeWithError(connection, code: WSManError.invalidParameter, message: "RELEASE_RESULT_RING must be sent on operation 0")
                return
            }
            releaseResultRing(to: position, from: connection)
            return
        case .hello:
            closeWithError(connection, code: WSManError.invalidParameter, message: "HELLO sent twice")
            return
        default:
            break
        }
        guard admitRequest(frame.message.type, op: op, from: connection) else { return }
        switch frame.message {
        case .status, .listPlugins, .assertIdentity, .openResultRing: break
        default: connection.identityFixed = true
        }
        switch frame.message {
        case .assertIdentity(let request): assertIdentity(request, op: op, from: connection)
        case .openResultRing(let size): openResultRing(size: size, op: op, from: connection)
        case .createShell(let request): createShell(request, op: op, from: connection)
        case .runCommand(let request): runCommand(request, op: op, from: connection)
        case .send(let request): sendInput(request, op: op, from: connection)
        case .receive(let request):
            forwardShellOperation(.receive, shellID: request.shellID, commandID: request.commandID, timeoutMs: request.timeoutMs, op: op, from: connection) { context in
                .workerReceive(WorkerReceive(context: context, shellID: request.shellID, commandID: request.commandID, streams: request.streams))
            }
        case .signal(let request):
            forwardShellOperation(.signal, shellID: request.shellID, commandID: request.commandID, timeoutMs: request.timeoutMs, op: op, from: connection) { context in
                .workerSignal(WorkerSignal(context: context, shellID: request.shellID, commandID: request.commandID, code: request.code))
            }
        case .connect(let request): connectShell(request, op: op, from: connection)
        case .disconnect(let request): disconnectShell(request, op: op, from: connection)
        case .closeShell(let shellID): closeShellRequest(shellID, op: op, from: connection)
        case .status(let plugin):
            queue(Frame(operationID: op, flags: .final, message: .statusReply(json: statusJSON(plugin: plugin.isEmpty ? nil : plugin, for: connection.peer))), on: connection)
        case .listPlugins:
            queue(Frame(operationID: op, flags: .final, message: .statusReply(json: pluginsJSON())), on: connection)
        case .restartPlugin(let name): adminStopPlugin(name, restart: true, op: op, from: connection)
        case .stopPlugin(let name): adminStopPlugin(name, restart: false, op: op, from: connection)
        case .reload:
            guard isAdmin(connection.peer) else {
                complete(connection.id, op, code: WSManError.accessDenied, message: "only administrators (Admins in the configuration) may reload airlockd")
                return
            }
            let summary = reload(requestedBy: "user \(connection.peer.userName)")
            complete(connection.id, op, code: summary.ok ? 0 : WSManError.pluginConfigurationCorrupted, extendedInformation: summary.text, message: summary.ok ? "" : summary.text)
        default:
            closeWithError(connection, code: WSManError.invalidParameter, message: "\(frame.message.type.wireName) is not a request a client may send")
        }
    }

    var maxOperationsPerConnection: Int { 4096 }

    /// The checks every new request passes (its id, and the connection's limit); answers or
    /// closes the connection and returns false when one fails.
    private func admitRequest(_ type: MessageType, op: UInt64, from connection: ClientConnection) -> Bool {
        guard op != 0 else {
            closeWithError(connection, code: WSManError.invalidParameter, message: "\(type.wireName) needs a non-zero operation id")
            return false
        }
        guard connection.operations[op] == nil else {
            closeWithError(connection, code: WSManError.invalidParameter, message: "operation id \(op) is already in flight on this connection")
            return false
        }
        if connection.operations.count >= maxOperationsPerConnection {
            complete(connection.id, op, code: WSManError.quotaMaxOperations,
                     message: "this connection already has \(maxOperationsPerConnection) operations in flight; wait for some to finish")
            return false
        }
        return true
    }

    /// A `SIGNAL` or `RECEIVE` read in place (the hot path: no ``Message`` is built for it
    /// or for the worker request that forwards it). Exactly what ``handleClientFrame(_:from:)``
    /// does for the decoded frame.
    func handleShellRequest(_ request: ShellRequestPacket, from connection: ClientConnection) {
        let op = request.operationID
        guard admitRequest(request.kind.requestType, op: op, from: connection) else { return }
        connection.identityFixed = true
        let kind: OperationKind = request.kind == .signal ? .signal : .receive
        guard let prepared = prepareShellOperation(kind, shellID: request.shellID, commandID: request.commandID, timeoutMs: request.timeoutMs, op: op, from: connection) else { return }
        submit(prepared.plugin, operation: prepared.operation, request: request, shell: prepared.shell, timeoutMs: prepared.route.timeoutMs,
               route: prepared.route.route, connection: connection)
    }

    private func handleHello(_ frame: Frame, from connection: ClientConnection) {
        guard case .hello(let hello) = frame.message else {
            closeWithError(connection, code: WSManError.invalidParameter, message: "the first frame must be HELLO (type 0x0001), got \(frame.message.type.wireName)")
            return
        }
        guard hello.magic == Hello.magic else {
            closeWithError(connection, code: WSManError.invalidParameter, message: "HELLO magic is 0x\(String(hello.magic, radix: 16)), expected 0x4B4C5241 (\"ARLK\"): this is not an Airlock client")
            return
        }
        guard hello.minVersion <= ProtocolLimits.version && ProtocolLimits.version <= hello.maxVersion else {
            closeWithError(connection, code: WSManError.invalidParameter, message: "no common protocol version: the client speaks \(hello.minVersion)...\(hello.maxVersion), this server speaks 1...1")
            return
        }
        connection.state = .ready
        connection.decoder.maxFrameSize = config.maxFrameSize
        queue(Frame(operationID: 0, message: .helloAck(HelloAck(
            version: ProtocolLimits.version, maxFrameSize: UInt32(config.maxFrameSize), maxOperations: UInt32(maxOperationsPerConnection),
            serverVersion: "airlockd \(Self.version)", peerUID: connection.peer.uid, peerUserName: connection.peer.userName))), on: connection)
    }

    // MARK: - Access

    func isAdmin(_ peer: PeerIdentity) -> Bool {
        (peer.uid == 0 && !peer.isGatewayOnly) || config.admins.contains(peer.accessName)
    }

    /// nil when allowed; otherwise why not.
    func accessDenial(_ plugin: PluginRuntime, for peer: PeerIdentity) -> String? {
        let users = plugin.config.allowedUsers
        if users.contains("*") || users.contains(peer.accessName) || (!peer.isGatewayOnly && users.contains(String(peer.uid))) { return nil }
        if !plugin.config.allowedGroups.isEmpty && !peer.isGatewayOnly {
            var groups = Set(UserDatabase.groupList(user: peer.userName, gid: peer.gid))
            groups.insert(peer.gid)
            for name in plugin.config.allowedGroups {
                if let gid = UserDatabase.lookupGroup(name: name), groups.contains(gid) { return nil }
            }
        }
        return "\(peer.described) may not use plug-in '\(plugin.name)': its AllowedUsers/AllowedGroups do not include this user"
    }

    /// Finds a plug-in by name, or by resource URI (exact match, or the longest prefix).
    func resolvePlugin(name: String, resourceURI: String) -> PluginRuntime? {
        if !name.isEmpty { return plugins[name] }
        var best: (PluginRuntime, Int)?
        for plugin in plugins.values {
            for resource in plugin.config.resources {
                let matches = resource.exactMatch ? resource.uri == resourceURI : resourceURI.hasPrefix(resource.uri)
                if matches && resource.uri.count > (best?.1 ?? -1) { best = (plugin, resource.uri.count) }
            }
        }
        return best?.0
    }

    // MARK: - Shells

    private func createShell(_ request: CreateShell, op: UInt64, from connection: ClientConnection) {
        // Every later request of the shell carries these to the worker; keep them small.
        if request.resourceURI.utf8.count > 2048 || request.locale.utf8.count > 85 || request.dataLocale.utf8.count > 85 {
            complete(connection.id, op, code: WSManError.invalidParameter,
                     message: "CREATE_SHELL: the resource URI may have at most 2048 bytes and a locale at most 85")
            return
        }
        guard let plugin = resolvePlugin(name: request.plugin, resourceURI: request.resourceURI) else {
            let what = request.plugin.isEmpty ? "no plug-in is registered for resource URI \(request.resourceURI)" : "no plug-in named '\(request.plugin)' is registered"
            complete(connection.id, op, code: WSManError.invalidResourceURI, message: "\(what); `airlockctl plugins` lists the registered plug-ins")
            return
        }
        guard plugin.config.enabled else {
            complete(connection.id, op, code: WSManError.invalidResourceURI, message: "plug-in '\(plugin.name)' is disabled (Enabled: false in its configuration)")
            return
        }
        if let denial = accessDenial(plugin, for: connection.peer) {
            logger.notice("access denied", metadata: ["plugin": .string(plugin.name), "peer_uid": .stringConvertible(connection.peer.uid)])
            complete(connection.id, op, code: WSManError.accessDenied, message: denial)
            return
        }
        if let quota = shellQuotaViolation(plugin, for: connection.peer) {
            complete(connection.id, op, code: quota.code, message: quota.message)
            return
        }
        guard admissible(plugin, op: op, connection: connection) else { return }
        let resourceURI = request.resourceURI.isEmpty ? (plugin.config.resources.first?.uri ?? "") : request.resourceURI
        let shellID = nextShellID
        nextShellID += 1
        let workerOp = plugin.allocateOperationID()
        let shell = ShellRecord(id: shellID, runtime: plugin, resourceURI: resourceURI, owner: connection.peer,
                                generation: plugin.generation, workerOperationID: workerOp, attachedConnection: connection.id)
        shells[shellID] = shell
        plugin.shells.insert(shellID)
        connection.shells.insert(shellID)
        let timeout = request.timeoutMs != 0 ? request.timeoutMs : plugin.config.operationTimeoutMs
        let context = requestContext(connection.peer, resourceURI: resourceURI, locale: request.locale, dataLocale: request.dataLocale, timeoutMs: timeout)
        let idle = request.idleTimeoutMs != 0 ? request.idleTimeoutMs : plugin.config.quotas.idleTimeoutMs
        let message = Message.workerShell(WorkerShell(
            context: context, shellID: shellID, idleTimeoutMs: idle, inputStreams: request.inputStreams, outputStreams: request.outputStreams,
            workingDirectory: request.workingDirectory, environment: request.environment, name: request.name, options: request.options,
            optionsMustUnderstand: request.optionsMustUnderstand, inboundShellInformation: request.inboundShellInformation))
        submit(plugin, operation: workerOp, message: message, route: Route(
            kind: .shell, connectionID: connection.id, clientOperationID: op, shellID: shellID, commandID: 0,
            startedAt: loop.now, deadline: deadline(timeout), principal: connection.peer.principal), connection: connection)
    }

    private func shellQuotaViolation(_ plugin: PluginRuntime, for peer: PeerIdentity) -> (code: UInt32, message: String)? {
        let quotas = plugin.config.quotas
        let pluginShells = plugin.shells.compactMap { shells[$0] }
        if pluginShells.count >= quotas.maxShells {
            return (WSManError.quotaMaxShells, "plug-in '\(plugin.name)' already has \(pluginShells.count) shells, its MaxShells quota; close a shell and retry")
        }
        let mine = pluginShells.filter { $0.ownerPrincipal == peer.principal }.count
        if mine >= quotas.maxShellsPerUser {
            return (WSManError.quotaMaxShells, "user \(peer.userName) already has \(mine) shells on plug-in '\(plugin.name)', its MaxShellsPerUser quota; close one and retry")
        }
        let users = Set(pluginShells.map(\.ownerPrincipal))
        if !users.contains(peer.principal) && users.count >= quotas.maxConcurrentUsers {
            return (WSManError.quotaUser, "plug-in '\(plugin.name)' already serves \(users.count) users, its MaxConcurrentUsers quota; retry later")
        }
        return nil
    }

    /// Checks the per-plug-in and per-user operation quotas; answers the request and
    /// returns false when one is exceeded.
    private func admissible(_ plugin: PluginRuntime, op: UInt64, connection: ClientConnection) -> Bool {
        let quotas = plugin.config.quotas
        // Fast path: with fewer operations in flight than the smallest limit no quota can be reached.
        if plugin.routes.awaitingAnswer < min(quotas.maxConcurrentOperations, quotas.maxConcurrentOperationsPerUser) { return true }
        let active = plugin.routes.values.filter(\.awaitsAnswer)
        if active.count >= quotas.maxConcurrentOperations {
            complete(connection.id, op, code: WSManError.quotaMaxOperations, message: "plug-in '\(plugin.name)' already has \(active.count) operations in flight, its MaxConcurrentOperations quota; retry later")
            return false
        }
        let mine = active.filter { $0.principal == connection.peer.principal }.count
        if mine >= quotas.maxConcurrentOperationsPerUser {
            complete(connection.id, op, code: WSManError.quotaMaxOperations, message: "user \(connection.peer.userName) already has \(mine) operations in flight on plug-in '\(plugin.name)', its MaxConcurrentOperationsPerUser quota; wait for some to finish")
            return false
        }
        return true
    }

    /// The locale of requests that name none.
    static let defaultLocale = "en-US"

    func requestContext(_ peer: PeerIdentity, resourceURI: String, locale: String = defaultLocale, dataLocale: String = defaultLocale, timeoutMs: UInt32) -> RequestContext {
        RequestContext(senderName: peer.userName, authenticationMechanism: peer.authenticationMechanism, resourceURI: resourceURI,
                       locale: locale.isEmpty ? Self.defaultLocale : locale, dataLocale: dataLocale.isEmpty ? Self.defaultLocale : dataLocale, timeoutMs: timeoutMs,
                       httpURL: peer.httpURL)
    }

    func deadline(_ timeoutMs: UInt32) -> UInt64 {
        timeoutMs == 0 ? 0 : loop.now &+ UInt64(timeoutMs) * 1_000_000
    }

    /// Looks up a shell the connection's user may use; answers the request and returns
    /// nil otherwise.
    private func usableShell(_ shellID: UInt64, op: UInt64, from connection: ClientConnection, allowAdmin: Bool = false) -> (ShellRecord, PluginRuntime)? {
        guard let shell = shells[shellID], shell.runtime.isRegistered, shell.generation == shell.runtime.generation else {
            complete(connection.id, op, code: WSManError.invalidSelectors, message: "shell \(shellID) does not exist (it was closed, or never created)")
            return nil
        }
        let plugin = shell.runtime
        guard shell.ownerPrincipal == connection.peer.principal || (allowAdmin && isAdmin(connection.peer)) else {
            complete(connection.id, op, code: WSManError.accessDenied, message: "shell \(shellID) belongs to another user")
            return nil
        }
        guard !shell.closing else {
            complete(connection.id, op, code: WSManError.shellAlreadyClosed, message: "shell \(shellID) is closing")
            return nil
        }
        guard shell.ready else {
            complete(connection.id, op, code: WSManError.shellNotInitialized, message: "shell \(shellID) is still being created")
            return nil
        }
        return (shell, plugin)
    }

    private func runCommand(_ request: RunCommand, op: UInt64, from connection: ClientConnection) {
        guard let (shell, plugin) = usableShell(request.shellID, op: op, from: connection) else { return }
        if shell.commands.count >= plugin.config.quotas.maxConcurrentCommandsPerShell {
            complete(connection.id, op, code: WSManError.quotaLimit, message: "shell \(shell.id) already runs \(shell.commands.count) commands, its MaxConcurrentCommandsPerShell quota")
            return
        }
        guard admissible(plugin, op: op, connection: connection) else { return }
        let commandID = nextCommandID
        nextCommandID += 1
        let workerOp = plugin.allocateOperationID()
        shell.commands[commandID] = CommandRecord(id: commandID, workerOperationID: workerOp)
        let timeout = request.timeoutMs != 0 ? request.timeoutMs : plugin.config.operationTimeoutMs
        let message = Message.workerCommand(WorkerCommand(
            context: requestContext(connection.peer, resourceURI: shell.resourceURI, timeoutMs: timeout),
            shellID: shell.id, commandID: commandID, commandLine: request.commandLine, arguments: request.arguments, options: request.options))
        submit(plugin, operation: workerOp, message: message, route: Route(
            kind: .command, connectionID: connection.id, clientOperationID: op, shellID: shell.id, commandID: commandID,
            startedAt: loop.now, deadline: deadline(timeout), principal: connection.peer.principal), connection: connection)
    }

    private func checkCommand(_ shell: ShellRecord, _ commandID: UInt64, op: UInt64, connection: ClientConnection) -> Bool {
        if commandID != 0 && shell.commands[commandID]?.ready != true {
            complete(connection.id, op, code: WSManError.invalidSelectors, message: "command \(commandID) does not exist in shell \(shell.id) (it ended, or never started)")
            return false
        }
        return true
    }

    private func forwardShellOperation(
        _ kind: OperationKind, shellID: UInt64, commandID: UInt64, timeoutMs: UInt32, op: UInt64, from connection: ClientConnection,
        _ make: (RequestContext) -> Message
    ) {
        guard let prepared = prepareShellOperation(kind, shellID: shellID, commandID: commandID, timeoutMs: timeoutMs, op: op, from: connection) else { return }
        let context = requestContext(connection.peer, resourceURI: prepared.shell.resourceURI, timeoutMs: prepared.route.timeoutMs)
        submit(prepared.plugin, operation: prepared.operation, message: make(context), route: prepared.route.route, connection: connection)
    }

    /// Checks an operation on an existing shell (and command) and prepares what forwarding
    /// it takes; answers the request and returns nil when it cannot go ahead.
    private func prepareShellOperation(
        _ kind: OperationKind, shellID: UInt64, commandID: UInt64, timeoutMs: UInt32, op: UInt64, from connection: ClientConnection
    ) -> (plugin: PluginRuntime, shell: ShellRecord, operation: UInt64, route: (route: Route, timeoutMs: UInt32))? {
        guard let (shell, plugin) = usableShell(shellID, op: op, from: connection) else { return nil }
        guard checkCommand(shell, commandID, op: op, connection: connection) else { return nil }
        guard admissible(plugin, op: op, connection: connection) else { return nil }
        let timeout = timeoutMs != 0 ? timeoutMs : plugin.config.operationTimeoutMs
        let workerOp = plugin.allocateOperationID()
        let route = Route(
            kind: kind, connectionID: connection.id, clientOperationID: op, shellID: shellID, commandID: commandID,
            startedAt: loop.now, deadline: deadline(timeout), principal: connection.peer.principal)
        return (plugin, shell, workerOp, (route, timeout))
    }

    private func sendInput(_ request: SendInput, op: UInt64, from connection: ClientConnection) {
        guard let (shell, plugin) = usableShell(request.shellID, op: op, from: connection) else { return }
        guard checkCommand(shell, request.commandID, op: op, connection: connection) else { return }
        let key = "\(request.commandID)/\(request.stream)"
        let queued = QueuedSend(connectionID: connection.id, clientOperationID: op, request: request, peer: connection.peer)
        if shell.busySendKeys.contains(key) {
            // One outstanding Send per stream: the next one waits for the previous completion.
            shell.sendQueues[key, default: []].append(queued)
            connection.operations[op] = OperationKey(plugin: plugin.name, workerOperationID: 0)
            return
        }
        guard admissible(plugin, op: op, connection: connection) else { return }
        dispatchSend(queued, shell: shell, plugin: plugin, key: key)
    }

    func dispatchSend(_ queued: QueuedSend, shell: ShellRecord, plugin: PluginRuntime, key: String) {
        let request = queued.request
        shell.busySendKeys.insert(key)
        let timeout = request.timeoutMs != 0 ? request.timeoutMs : plugin.config.operationTimeoutMs
        let workerOp = plugin.allocateOperationID()
        var route = Route(kind: .send, connectionID: queued.connectionID, clientOperationID: queued.clientOperationID, shellID: shell.id,
                          commandID: request.commandID, startedAt: loop.now, deadline: deadline(timeout), principal: queued.peer.principal)
        route.sendKey = key
        let message = Message.workerSend(WorkerSend(
            context: requestContext(queued.peer, resourceURI: shell.resourceURI, timeoutMs: timeout), shellID: shell.id, commandID: request.commandID,
            stream: request.stream, endOfStream: request.endOfStream, data: request.data))
        submit(plugin, operation: workerOp, message: message, route: route, connection: connections[queued.connectionID])
    }

    /// After a send completes, starts the next one queued on the same stream.
    func releaseSendKey(_ key: String, shell: ShellRecord, plugin: PluginRuntime) {
        shell.busySendKeys.remove(key)
        guard var queue = shell.sendQueues[key], !queue.isEmpty else { return }
        let next = queue.removeFirst()
        shell.sendQueues[key] = queue.isEmpty ? nil : queue
        guard connections[next.connectionID]?.operations[next.clientOperationID] != nil else {
            releaseSendKey(key, shell: shell, plugin: plugin)
            return
        }
        dispatchSend(next, shell: shell, plugin: plugin, key: key)
    }

    private func connectShell(_ request: ConnectRequest, op: UInt64, from connection: ClientConnection) {
        guard let (shell, plugin) = usableShell(request.shellID, op: op, from: connection) else { return }
        guard checkCommand(shell, request.commandID, op: op, connection: connection) else { return }
        // Reattach: events of this shell now go to this connection.
        if shell.attachedConnection != connection.id {
            connections[shell.attachedConnection]?.shells.remove(shell.id)
            shell.attachedConnection = connection.id
            connection.shells.insert(shell.id)
        }
        shell.disconnectedUntil = 0
        guard plugin.exports & PluginExports.connect.rawValue != 0 || plugin.state != .running else {
            complete(connection.id, op, code: 0, message: "plug-in '\(plugin.name)' does not export WSManPluginConnect; the shell was reattached")
            return
        }
        forwardShellOperation(.connect, shellID: request.shellID, commandID: request.commandID, timeoutMs: request.timeoutMs, op: op, from: connection) { context in
            .workerConnect(WorkerConnect(context: context, shellID: request.shellID, commandID: request.commandID, inboundConnectInformation: request.inboundConnectInformation))
        }
    }

    private func disconnectShell(_ request: DisconnectRequest, op: UInt64, from connection: ClientConnection) {
        guard let (shell, plugin) = usableShell(request.shellID, op: op, from: connection) else { return }
        let idle = request.idleTimeoutMs != 0 ? request.idleTimeoutMs : plugin.config.quotas.idleTimeoutMs
        shell.disconnectedUntil = SystemClock.monotonicNanoseconds() &+ UInt64(max(idle, 1)) * 1_000_000
        if shell.attachedConnection == connection.id {
            connection.shells.remove(shell.id)
            shell.attachedConnection = 0
        }
        complete(connection.id, op, code: 0, message: "")
    }

    private func closeShellRequest(_ shellID: UInt64, op: UInt64, from connection: ClientConnection) {
        guard let shell = shells[shellID], let plugin = plugins[shell.plugin], shell.generation == plugin.generation else {
            complete(connection.id, op, code: WSManError.invalidSelectors, message: "shell \(shellID) does not exist (it was closed, or never created)")
            return
        }
        guard shell.ownerPrincipal == connection.peer.principal || isAdmin(connection.peer) else {
            complete(connection.id, op, code: WSManError.accessDenied, message: "shell \(shellID) belongs to another user")
            return
        }
        connection.operations[op] = OperationKey(plugin: plugin.name, workerOperationID: 0)
        closeShell(shell, waiter: (connection.id, op))
    }

    /// Cancels a shell's operations (children first) and then the shell itself.
    func closeShell(_ shell: ShellRecord, waiter: (connection: UInt64, operation: UInt64)?) {
        if let waiter { shell.closeWaiters.append(waiter) }
        guard !shell.closing else { return }
        shell.closing = true
        guard let plugin = plugins[shell.plugin] else { return }
        let children = plugin.routes.filter { $0.value.shellID == shell.id && $0.value.kind != .shell }
            .sorted { $0.value.kind.cancelOrder < $1.value.kind.cancelOrder }
        for (operation, _) in children { sendCancel(plugin, operation: operation) }
        if plugin.queued.contains(where: { $0.workerOperationID == shell.workerOperationID }) {
            // Not yet sent to the worker: just forget it.
            plugin.queued.removeAll { $0.workerOperationID == shell.workerOperationID }
            if let route = plugin.routes.removeValue(forKey: shell.workerOperationID) {
                complete(route.connectionID, route.clientOperationID, code: WSManError.operationAborted, message: "the shell was closed before it was created")
            }
            finishShell(shell, plugin: plugin, code: 0, extendedInformation: nil, message: "")
            return
        }
        sendCancel(plugin, operation: shell.workerOperationID)
    }

    private func cancelClientOperation(_ op: UInt64, of connection: ClientConnection) {
        guard let key = connection.operations[op], let plugin = plugins[key.plugin] else { return }
        if key.workerOperationID == 0 {
            // A queued send: drop it from its queue.
            for shell in shells.values where shell.plugin == plugin.name {
                for (streamKey, queue) in shell.sendQueues {
                    shell.sendQueues[streamKey] = queue.filter { !($0.connectionID == connection.id && $0.clientOperationID == op) }
                }
            }
            complete(connection.id, op, code: WSManError.operationAborted, message: "cancelled by the client before it was sent to the plug-in")
            return
        }
        if let index = plugin.queued.firstIndex(where: { $0.workerOperationID == key.workerOperationID }) {
            plugin.queued.remove(at: index)
            if let route = plugin.routes.removeValue(forKey: key.workerOperationID) { dropRouteEffects(plugin, route) }
            complete(connection.id, op, code: WSManError.operationAborted, message: "cancelled by the client before the plug-in started")
            return
        }
        if var route = plugin.routes[key.workerOperationID] {
            route.cancelledByClient = true
            plugin.routes[key.workerOperationID] = route
            sendCancel(plugin, operation: key.workerOperationID)
        }
    }

    // MARK: - Administration

    private func adminStopPlugin(_ name: String, restart: Bool, op: UInt64, from connection: ClientConnection) {
        guard isAdmin(connection.peer) else {
            complete(connection.id, op, code: WSManError.accessDenied, message: "only administrators (Admins in the configuration) may \(restart ? "restart" : "stop") plug-ins")
            return
        }
        guard let plugin = plugins[name] else {
            complete(connection.id, op, code: WSManError.invalidResourceURI, message: "no plug-in named '\(name)' is registered")
            return
        }
        logger.info("\(restart ? "restart" : "stop") requested by \(connection.peer.userName)", metadata: ["plugin": .string(name)])
        if case .quarantined = plugin.state { plugin.state = .idle }
        plugin.crashTimes.removeAll()
        if let timer = plugin.restartTimer { loop.cancelTimer(timer); plugin.restartTimer = nil }
        if plugin.pid == 0 {
            if plugin.state != .idle { plugin.state = .idle }
            failQueued(plugin, code: WSManError.shutdownInProgress, message: "plug-in '\(name)' was stopped by an administrator")
            if restart { ensureWorker(plugin) }
            complete(connection.id, op, code: 0, message: "")
            return
        }
        plugin.stopWaiters.append((connection.id, op, restart))
        connection.operations[op] = OperationKey(plugin: name, workerOperationID: 0)
        stopWorker(plugin, reason: WSManShutdownReason.service, why: "\(restart ? "restart" : "stop") requested by \(connection.peer.userName)")
    }

    /// Re-reads the configuration. Plug-ins whose settings did not change keep their
    /// workers and shells; changed ones are stopped (and start again on demand);
    /// removed ones are stopped; new ones are added.
    @discardableResult
    func reload(requestedBy who: String) -> (ok: Bool, text: String) {
        notifications.reloading()
        defer { notifications.ready(statusLine()) }
        let newConfig: SupervisorConfiguration
        do {
            newConfig = try reloadConfiguration()
        } catch {
            let text = "reload refused, the running configuration stays: \(error)"
            logger.error("\(text)")
            return (false, text)
        }
        var added: [String] = [], removed: [String] = [], changed: [String] = []
        let newNames = Set(newConfig.plugins.map(\.name))
        for name in pluginOrder where !newNames.contains(name) {
            removed.append(name)
            if let plugin = plugins[name] {
                plugin.config.enabled = false
                stopWorker(plugin, reason: WSManShutdownReason.service, why: "removed from the configuration")
                if plugin.pid == 0 { unregister(plugin) }
            }
        }
        for pluginConfig in newConfig.plugins {
            if let existing = plugins[pluginConfig.name] {
                if existing.config != pluginConfig {
                    changed.append(pluginConfig.name)
                    stopWorker(existing, reason: WSManShutdownReason.service, why: "its configuration changed")
                    existing.config = pluginConfig
                }
            } else {
                added.append(pluginConfig.name)
                plugins[pluginConfig.name] = PluginRuntime(config: pluginConfig)
            }
        }
        pluginOrder = newConfig.plugins.map(\.name) + pluginOrder.filter { !newNames.contains($0) && plugins[$0] != nil }
        let socket = config.socketPath
        config = newConfig
        config.socketPath = socket
        let text = "reloaded (\(who)): \(added.count) added\(list(added)), \(changed.count) changed\(list(changed)), \(removed.count) removed\(list(removed))"
        logger.info("\(text)")
        return (true, text)
    }

    private func list(_ names: [String]) -> String {
        names.isEmpty ? "" : " (" + names.joined(separator: ", ") + ")"
    }
}
