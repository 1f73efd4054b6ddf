import AirlockPosix
import AirlockProtocol
import AirlockSandbox
import CAirlockShims
import Glibc
import Logging
import SystemPackage

/// Hooks for the service manager (systemd): readiness, status line, watchdog, stop and
/// reload notifications. All default to doing nothing.
public struct ServiceNotifications: Sendable {
    public var ready: @Sendable (_ status: String) -> Void = { _ in }
    public var status: @Sendable (_ status: String) -> Void = { _ in }
    public var stopping: @Sendable (_ status: String) -> Void = { _ in }
    public var reloading: @Sendable () -> Void = {}
    public var watchdog: @Sendable () -> Void = {}
    /// Watchdog ping interval (half of WATCHDOG_USEC), or nil when no watchdog is set.
    public var watchdogInterval: Duration? = nil
    public init() {}
}

/// The supervisor: accepts clients on a Unix socket, runs one sandboxed worker per
/// plug-in, and routes every operation and callback between them.
///
/// It is a single-threaded reactor: ``run()`` owns the calling thread (which must be
/// long-lived, because workers' parent-death signal follows the spawning thread) and
/// returns when the supervisor has stopped.
public final class Supervisor {
    /// The version reported in `HELLO_ACK` and status.
    public static let version = "0.1.0"

    var config: SupervisorConfiguration
    let reloadConfiguration: () throws -> SupervisorConfiguration
    let logger: Logger
    let notifications: ServiceNotifications
    let loop: EventLoop
    let startedAt = SystemClock.monotonicNanoseconds()

    var listener: FileDescriptor?
    var listenerToken: UInt64 = 0
    var listenerInherited = false
    var connections: [UInt64: ClientConnection] = [:]
    var connectionsPerUser: [UInt32: Int] = [:]
    /// Principals given to gateway-only user names (``PeerIdentity/principal``).
    var gatewayPrincipals: [String: UInt64] = [:]
    var nextConnectionID: UInt64 = 1
    var plugins: [String: PluginRuntime] = [:]
    var pluginOrder: [String] = []
    var shells: [UInt64: ShellRecord] = [:]
    var nextShellID: UInt64 = 1
    var nextCommandID: UInt64 = 1
    var signals: SignalDescriptor?
    var stopping = false
    var stopDeadline: UInt64 = 0
    var finished = false
    var lastStatusLine = ""
    var lastWatchdog: UInt64 = 0
    var outputRateLimiter = OutputRateLimiter()
    /// Connections with output queued in the current batch (flushed after it).
    var dirtyConnections: [ClientConnection] = []
    /// The list ``flushConnections()`` walks (swapped with ``dirtyConnections``).
    private var flushingConnections: [ClientConnection] = []
    /// The delegated cgroup v2 subtree (systemd `Delegate=yes`), when there is one: each
    /// worker then runs in `workers/<plug-in>` with memory.max and pids.max.
    var cgroup: DelegatedCgroup?
    /// Scratch buffer for reads from client sockets (worker frames arrive in ``ringBuffer``).
    var readBuffer: UnsafeMutableRawBufferPointer
    /// Each frame from a worker's ring is copied here and handled from here (see
    /// ``drainRing(_:)``); a larger one ends the worker.
    let ringBuffer: UnsafeMutableRawBufferPointer
    /// Buffers for the rare packets on a worker's socket (`W_FATAL`, or what a plug-in
    /// wrote to descriptor 3; see ``drainChannel(_:)``).
    let packetBatch: PacketBatch
    /// Set while ``drainRing(_:)`` or ``drainChannel(_:)`` handles frames from their buffers.
    var drainingChannel = false
    /// Packets from workers other than results and completions are copied here to be
    /// decoded (the decoder reads arrays): kept between packets, up to 64 KiB.
    var scratchBytes: [UInt8] = []
    /// Frames to workers and clients are encoded here (see ``encode(_:)``): no allocation
    /// per frame.
    var frameWriter = ByteWriter(reservingCapacity: 64 << 10)
    let devNull: FileDescriptor

    /// Creates a supervisor. `listeningSocket` is a socket passed by socket activation;
    /// without it the supervisor binds `configuration.socketPath`.
    public init(
        configuration: SupervisorConfiguration,
        reloadConfiguration: @escaping () throws -> SupervisorConfiguration,
        listeningSocket: Int32? = nil,
        notifications: ServiceNotifications = ServiceNotifications(),
        logger: Logger
    ) throws {
        self.config = configuration
        self.reloadConfiguration = reloadConfiguration
        self.notifications = notifications
        self.logger = logger
        self.loop = try EventLoop()
        self.readBuffer = .allocate(byteCount: max(configuration.maxFrameSize, 1 << 20) + 4096, alignment: 16)
        self.ringBuffer = .allocate(byteCount: max(configuration.maxFrameSize, 1 << 20) + 4096, alignment: 16)
        self.packetBatch = PacketBatch(slots: 4, capacity: max(configuration.maxFrameSize, 1 << 20) + 4096)
        self.devNull = try Posix.open("/dev/null", flags: O_RDWR)
        if let inherited = listeningSocket {
            listener = FileDescriptor(rawValue: inherited)
            listenerInherited = true
            try Posix.setNonBlocking(FileDescriptor(rawValue: inherited))
        }
        for plugin in configuration.plugins {
            plugins[plugin.name] = PluginRuntime(config: plugin)
            pluginOrder.append(plugin.name)
        }
    }

    deinit {
        readBuffer.deallocate()
        ringBuffer.deallocate()
    }

    /// Encodes a frame into ``frameWriter`` with `body`, replacing what it held (memory is
    /// kept up to 1 MiB). Read the bytes with `frameWriter.withUnsafeBytes` before anything
    /// else encodes.
    func encodeFrame(_ body: (inout ByteWriter) -> Void) {
        frameWriter.removeAll(keepingCapacity: 1 << 20)
        body(&frameWriter)
    }

    /// Encodes `frame` into ``frameWriter`` (see ``encodeFrame(_:)``).
    func encode(_ frame: Frame) {
        encodeFrame { frame.encode(into: &$0) }
    }

    /// Binds the socket (unless inherited), serves until SIGTERM or SIGINT, stops every
    /// worker and returns.
    public func run() throws {
        // Frames of up to 512 KB are allocated and freed on the hot path; keep freed memory
        // rather than trimming and faulting it back in on every chunk.
        MallocPolicy.keepFreedMemory()
        try SignalDescriptor.block([SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGPIPE])
        let signals = try SignalDescriptor(signals: [SIGCHLD, SIGTERM, SIGINT, SIGHUP])
        self.signals = signals
        try loop.register(signals.fd, events: .input) { [unowned self] _ in self.handleSignals() }
        // Processes a plug-in started and orphaned (a daemonizing double fork, a setsid child
        // whose worker died) come back to airlockd rather than to init, so they are reaped
        // and, when airlockd stops, ended (see killOrphans). With a PID namespace or a
        // delegated cgroup (the defaults) they end with their worker anyway.
        do {
            try ProcessControl.setChildSubreaper()
        } catch {
            logger.warning("cannot become a child subreaper (\(error)); processes orphaned by plug-ins outside a PID namespace may outlive airlockd")
        }
        // airlockd relays: every request and answer wakes it, and it wakes a worker or a
        // client in turn. Under SCHED_OTHER the woken relay runs ahead of the sender, which
        // then needs a second context switch just to go back to sleep; SCHED_BATCH (same
        // share of the CPU) lets the sender finish first. Workers inherit it.
        do {
            if try ProcessControl.preferBatchScheduling() {
                logger.debug("scheduling policy SCHED_BATCH")
            }
        } catch {
            logger.info("cannot switch to SCHED_BATCH (\(error)); relaying costs an extra context switch per operation")
        }

        if listener == nil {
            var options = UnixSocket.ListenOptions(kind: .stream, createParentDirectory: true, mode: mode_t(config.socketMode), backlog: 1024)
            if let group = config.socketGroup {
                guard let gid = UserDatabase.lookupGroup(name: group) else {
                    throw ConfigurationError("SocketGroup \"\(group)\" does not exist on this system")
                }
                options.group = gid
            }
            listener = try UnixSocket.listen(path: config.socketPath, options: options)
        }
        listenerToken = try loop.register(listener!, events: .input) { [unowned self] _ in self.acceptConnections() }

        cgroup = DelegatedCgroup.detect()
        if let cgroup {
            logger.info("workers run in delegated cgroups under \(cgroup.workersPath) (controllers: \(cgroup.controllers.sorted().joined(separator: ", ")))")
        }

        loop.onTick = { [unowned self] now in self.tick(now: now) }
        loop.afterBatch = { [unowned self] in self.flushConnections() }

        let summary = "serving \(plugins.count) plug-in(s) on \(config.socketPath)"
        logger.info("airlockd \(Self.version) \(summary)", metadata: ["socket": .string(config.socketPath)])
        notifications.ready(summary)
        lastStatusLine = summary

        loop.run(until: { [unowned self] in self.finished })

        if let listener, !listenerInherited {
            try? Posix.close(listener)
            _ = config.socketPath.withCString { unlink($0) }
        }
        logger.info("airlockd stopped")
    }

    // MARK: - Signals

    private func handleSignals() {
        while let info = try? signals?.read() {
            switch info.signal {
            case SIGCHLD: reapWorkers()
            case SIGTERM, SIGINT: beginStop(reason: "received \(ProcessControl.signalName(info.signal))")
            case SIGHUP: reload(requestedBy: "SIGHUP")
            default: break
            }
        }
    }

    // MARK: - Stopping

    /// Stops accepting, shuts every worker down (reason `WSMAN_PLUGIN_SHUTDOWN_SERVICE`),
    /// and finishes when they are gone or `ShutdownTimeoutMs` has passed.
    func beginStop(reason: String) {
        guard !stopping else { return }
        stopping = true
        logger.info("stopping: \(reason)")
        notifications.stopping("stopping: \(reason)")
        if let listener {
            loop.unregister(listener, token: listenerToken)
        }
        stopDeadline = SystemClock.monotonicNanoseconds() &+ UInt64(config.shutdownTimeoutMs) * 1_000_000
        for name in pluginOrder {
            guard let plugin = plugins[name] else { continue }
            stopWorker(plugin, reason: WSManShutdownReason.service, why: "airlockd is stopping")
        }
        checkStopped()
    }

    func checkStopped() {
        guard stopping else { return }
        let alive = plugins.values.contains { $0.pid != 0 }
        if !alive {
            killOrphans()
            flushConnections()
            finished = true
        } else if SystemClock.monotonicNanoseconds() >= stopDeadline {
            for plugin in plugins.values where plugin.pid != 0 {
                logger.warning("worker did not stop within \(config.shutdownTimeoutMs) ms; killing it", metadata: ["plugin": .string(plugin.name), "worker_pid": .stringConvertible(plugin.pid)])
                killWorker(plugin)
            }
        }
    }

    /// Ends the processes re-parented to airlockd (it is a child subreaper) once every
    /// worker is gone: what plug-ins left behind must not outlive the service. Repeats
    /// because an orphan's own children become airlockd's only when it dies.
    ///
    /// Reaps any child while it waits, never one pid in particular: a PID namespace's init
    /// that was re-parented here cannot finish dying until its namespace's other processes,
    /// possibly also re-parented here, have been reaped.
    ///
    /// A worker's PID-namespace init is re-parented here too when the worker's outer
    /// process exits; it ends by itself a moment later (and its namespace with it), so
    /// everything gets a second to go before SIGKILL.
    private func killOrphans() {
        let start = SystemClock.monotonicNanoseconds()
        let grace = start &+ 1_000_000_000
        let deadline = start &+ 6_000_000_000
        var signalled = Set<pid_t>()
        while SystemClock.monotonicNanoseconds() < deadline {
            while (try? ProcessControl.reapAny()) != nil {}
            let orphans = ProcessControl.children(of: getpid())
            if orphans.isEmpty { return }
            if SystemClock.monotonicNanoseconds() < grace {
                usleep(5_000)
                continue
            }
            for pid in orphans where !signalled.contains(pid) {
                signalled.insert(pid)
                logger.notice("ending a process a plug-in left behind", metadata: ["pid": .stringConvertible(pid)])
                _ = try? ProcessControl.kill(pid, signal: SIGKILL)
            }
            usleep(5_000)
        }
        logger.warning("processes left behind by plug-ins did not end within 5 s of SIGKILL", metadata: ["pids": .string(ProcessControl.children(of: getpid()).map(String.init).joined(separator: ","))])
    }

    // MARK: - Periodic work

    private func tick(now: UInt64) {
        checkDeadlines(now: now)
        if now &- lastWatchdog >= 1_000_000_000 {
            lastWatchdog = now
            everySecond(now: now)
        }
        if stopping { checkStopped() }
    }

    private func everySecond(now: UInt64) {
        // Stalled half frames and missing handshakes.
        let limit = UInt64(ProtocolLimits.partialFrameTimeoutSeconds) * 1_000_000_000
        for connection in connections.values {
            if connection.state == .awaitingHello && now &- connection.acceptedAt > limit {
                closeWithError(connection, code: WSManError.invalidParameter, message: "no HELLO within \(ProtocolLimits.partialFrameTimeoutSeconds) seconds of connecting")
            } else if connection.midFrameSince != 0 && now &- connection.midFrameSince > limit {
                closeWithError(connection, code: WSManError.invalidParameter, message: "a frame stayed incomplete for more than \(ProtocolLimits.partialFrameTimeoutSeconds) seconds")
            }
        }
        // Disconnected shells whose idle timeout passed.
        for shell in shells.values where shell.disconnectedUntil != 0 && now >= shell.disconnectedUntil && !shell.closing {
            logger.info("closing disconnected shell after its idle timeout", metadata: ["plugin": .string(shell.plugin), "shell_id": .stringConvertible(shell.id)])
            closeShell(shell, waiter: nil)
        }
        for plugin in plugins.values {
            workerHousekeeping(plugin, now: now)
        }
        if let interval = notifications.watchdogInterval, !stopping || true {
            _ = interval
            notifications.watchdog()
        }
        let line = statusLine()
        if line != lastStatusLine {
            lastStatusLine = line
            notifications.status(line)
        }
    }

    func statusLine() -> String {
        let running = plugins.values.filter { $0.state == .running }.count
        let quarantined = plugins.values.filter { if case .quarantined = $0.state { true } else { false } }.count
        var line = "\(connections.count) client(s), \(running)/\(plugins.count) worker(s) running, \(shells.count) shell(s)"
        if quarantined > 0 { line += ", \(quarantined) quarantined" }
        return line
    }

    // MARK: - Connections

    /// `SO_SNDBUF` of client connections (the kernel doubles it for its bookkeeping).
    static let clientSendBufferBytes: Int32 = 512 << 10

    private func acceptConnections() {
        guard let listener else { return }
        while true {
            let fd: FileDescriptor?
            do {
                fd = try UnixSocket.accept(listener)
            } catch {
                logger.warning("accept failed: \(error)")
                return
            }
            guard let fd else { return }
            guard let credentials = try? UnixSocket.peerCredentials(fd) else {
                try? Posix.close(fd)
                continue
            }
            // Room for 16 64 KiB results in flight to a streaming client (the default,
            // net.core.wmem_default, holds about three): fewer wake-ups per chunk on both
            // sides. It is kernel memory used only while output is in flight, and the
            // output credit windows bound it anyway.
            try? UnixSocket.setBufferSize(fd, .send, bytes: Self.clientSendBufferBytes, force: true)
            let name = UserDatabase.userName(uid: credentials.uid) ?? "uid:\(credentials.uid)"
            let peer = PeerIdentity(pid: credentials.pid, uid: credentials.uid, gid: credentials.gid, userName: name)
            let connection = ClientConnection(id: nextConnectionID, fd: fd, peer: peer, now: SystemClock.monotonicNanoseconds())
            nextConnectionID += 1
            let perUser = connectionsPerUser[peer.uid, default: 0]
            if connections.count >= config.maxConnections || perUser >= config.maxConnectionsPerUser {
                let limit = connections.count >= config.maxConnections
                    ? "airlockd already serves its maximum of \(config.maxConnections) connections (MaxConnections)"
                    : "user \(name) already has \(perUser) connections, the maximum (MaxConnectionsPerUser)"
                queue(Frame(operationID: 0, message: .error(ErrorReport(errorCode: WSManError.quotaLimit, message: limit + "; close some and retry"))), on: connection)
                _ = connection.flush()
                try? Posix.close(fd)
                continue
            }
            do {
                connection.token = try loop.register(fd, events: [.input, .readHangup]) { [unowned self, unowned connection] events in
                    self.connectionEvent(connection, events: events)
                }
            } catch {
                try? Posix.close(fd)
                continue
            }
            connections[connection.id] = connection
            connectionsPerUser[peer.uid, default: 0] += 1
        }
    }

    private func connectionEvent(_ connection: ClientConnection, events: Epoll.Events) {
        guard connection.isOpen else { return }
        if events.contains(.output) {
            if !connection.flush() { dropConnection(connection); return }
            updateInterest(connection)
            resumeHeldRings(of: connection)
            releaseDeferredCredits(connection)
            if connection.state == .closing && connection.pendingOutput == 0 { dropConnection(connection); return }
        }
        if events.contains(.input) || events.contains(.hangup) || events.contains(.readHangup) || events.contains(.error) {
            readFrom(connection)
        }
    }

    /// `SIGNAL` and `RECEIVE` frames up to this size are read in place (larger ones, rare:
    /// long stream lists, are decoded the usual way).
    static let inPlaceRequestLimit = 4096

    private func readFrom(_ connection: ClientConnection) {
        var rounds = 0
        while connection.isOpen && connection.state != .closing && !connection.readingPaused && rounds < 16 {
            rounds += 1
            let capacity = min(connection.decoder.readCapacity, readBuffer.count)
            let count: Int?
            var passed = Posix.PassedDescriptors()
            do {
                // recvmsg, for a descriptor passed with OPEN_RESULT_RING (PROTOCOL.md §5.6).
                count = try Posix.receive(
                    connection.fd, into: UnsafeMutableRawBufferPointer(rebasing: readBuffer[0..<capacity]), passing: &passed, flags: .dontWait)
            } catch {
                dropConnection(connection)
                return
            }
            if !passed.descriptors.isEmpty || passed.truncated {
                guard acceptPassedDescriptors(passed, from: connection) else { return }
            }
            guard let count else { return }
            if count == 0 {
                dropConnection(connection)
                return
            }
            connection.decoder.append(UnsafeRawBufferPointer(rebasing: readBuffer[0..<count]))
            do throws(ProtocolError) {
                while let (type, size) = try connection.decoder.peekFrame() {
                    if connection.state == .ready && size <= Self.inPlaceRequestLimit, let kind = ShellRequestPacket.kind(ofFrameType: type) {
                        // SIGNAL and RECEIVE are read in place from a copy on the stack (the
                        // decoder may be read again while the request is handled).
                        let malformed = withUnsafeTemporaryAllocation(byteCount: size, alignment: 8) { copy -> ProtocolError? in
                            connection.decoder.takeFrame(into: copy)
                            do throws(ProtocolError) {
                                let request = try ShellRequestPacket(frame: UnsafeRawBufferPointer(copy), kind: kind, maxFrameSize: connection.decoder.maxFrameSize)
                                handleShellRequest(request, from: connection)
                                return nil
                            } catch {
                                return error
                            }
                        }
                        if let malformed { throw malformed }
                    } else if let frame = try connection.decoder.next() {
                        handleClientFrame(frame, from: connection)
                    }
                    if !connection.isOpen || connection.state == .closing { return }
                }
            } catch {
                closeWithError(connection, code: error.code, message: error.message)
                return
            }
            connection.midFrameSince = connection.decoder.isMidFrame
                ? (connection.midFrameSince != 0 ? connection.midFrameSince : SystemClock.monotonicNanoseconds()) : 0
            if count < capacity { return }
        }
    }

    /// Sends an `ERROR` frame and closes the connection once it is written.
    func closeWithError(_ connection: ClientConnection, code: UInt32, message: String) {
        guard connection.state != .closing else { return }
        logger.notice("closing client connection: \(message)", metadata: ["peer_uid": .stringConvertible(connection.peer.uid), "peer_pid": .stringConvertible(connection.peer.pid), "wsman_error": .string(WSManError.name(code))])
        queue(Frame(operationID: 0, message: .error(ErrorReport(errorCode: code, message: message))), on: connection)
        connection.state = .closing
        abandonOperations(of: connection)
        if !connection.flush() || connection.pendingOutput == 0 {
            dropConnection(connection)
        } else {
            updateInterest(connection)
        }
    }

    /// Closes the socket; the connection's operations are cancelled and its shells closed
    /// (unless disconnected on purpose).
    func dropConnection(_ connection: ClientConnection) {
        guard connection.isOpen, connections.removeValue(forKey: connection.id) != nil else { return }
        connection.isOpen = false
        connectionsPerUser[connection.transportUID, default: 1] -= 1
        if connectionsPerUser[connection.transportUID] == 0 { connectionsPerUser[connection.transportUID] = nil }
        loop.unregister(connection.fd, token: connection.token)
        try? Posix.close(connection.fd)
        connection.resultRing?.close()
        connection.resultRing = nil
        if let passed = connection.passedDescriptor { try? Posix.close(passed) }
        connection.passedDescriptor = nil
        abandonOperations(of: connection)
        resumeHeldRings(of: connection)
    }

    private func abandonOperations(of connection: ClientConnection) {
        for (_, key) in connection.operations {
            guard let plugin = plugins[key.plugin] else { continue }
            if let index = plugin.queued.firstIndex(where: { $0.workerOperationID == key.workerOperationID }) {
                plugin.queued.remove(at: index)
                if let route = plugin.routes.removeValue(forKey: key.workerOperationID) {
                    dropRouteEffects(plugin, route)
                }
                continue
            }
            guard var route = plugin.routes[key.workerOperationID] else { continue }
            route.connectionID = 0
            route.cancelledByClient = true
            plugin.routes[key.workerOperationID] = route
            if route.pendingCredit > 0 { grantCredit(plugin, operation: key.workerOperationID) }
            if route.kind != .shell { sendCancel(plugin, operation: key.workerOperationID) }
        }
        connection.operations.removeAll()
        for shellID in connection.shells {
            guard let shell = shells[shellID], shell.attachedConnection == connection.id else { continue }
            shell.attachedConnection = 0
            if shell.disconnectedUntil == 0 {
                closeShell(shell, waiter: nil)
            }
        }
        connection.shells.removeAll()
    }

    func updateInterest(_ connection: ClientConnection) {
        guard connection.isOpen else { return }
        let wantsWrite = connection.pendingOutput > 0
        let pauseReading = connection.pendingOutput >= ClientConnection.highWatermark
        if wantsWrite != connection.wantsWritable || pauseReading != connection.readingPaused {
            connection.wantsWritable = wantsWrite
            connection.readingPaused = pauseReading
            var events: Epoll.Events = [.readHangup]
            if !pauseReading && connection.state != .closing { events.insert(.input) }
            if wantsWrite { events.insert(.output) }
            loop.modify(connection.fd, token: connection.token, events: events)
            if !pauseReading && connection.state != .closing {
                // Bytes may have arrived while paused.
                readFrom(connection)
            }
        }
    }

    /// Queues a frame on a connection; it is written at the end of the current batch.
    func queue(_ frame: Frame, on connection: ClientConnection) {
        encode(frame)
        queueEncoded(on: connection)
    }

    /// Queues the frame in ``frameWriter`` on a connection.
    func queueEncoded(on connection: ClientConnection) {
        noteOutput(on: connection)
        frameWriter.withUnsafeBytes { connection.enqueue(encoded: $0) }
    }

    /// Relays a frame received from a worker as it is, under a header rewritten in place
    /// (see ``ClientConnection/enqueueOrWrite(_:)``).
    func queueRelayed(_ frame: UnsafeMutableRawBufferPointer, type: MessageType, operationID: UInt64, on connection: ClientConnection) {
        noteOutput(on: connection)
        ResultFrames.rewriteHeader(frame, type: type, operationID: operationID)
        connection.enqueueOrWrite(UnsafeRawBufferPointer(frame))
    }

    /// ``queueRelayed(_:type:operationID:on:)`` of a frame in three parts: the header is
    /// rewritten in `head`.
    func queueRelayed(
        head: UnsafeMutableRawBufferPointer, data: UnsafeRawBufferPointer, tail: UnsafeRawBufferPointer, type: MessageType,
        operationID: UInt64, on connection: ClientConnection
    ) {
        noteOutput(on: connection)
        ResultFrames.rewriteHeader(head, type: type, operationID: operationID)
        connection.enqueueOrWrite(UnsafeRawBufferPointer(head), data, tail)
    }

    /// Puts a connection about to get output on the list flushed after the batch (once).
    private func noteOutput(on connection: ClientConnection) {
        if !connection.isDirty { dirtyConnections.append(connection) }
    }

    private func flushConnections() {
        // Swapped with a spare list rather than copied: no allocation per batch.
        var dirty: [ClientConnection] = []
        swap(&dirty, &flushingConnections)
        swap(&dirty, &dirtyConnections)
        defer {
            // Emptied element by element: cheaper than removeAll(keepingCapacity:) for the
            // one or few connections of a batch, and the capacity stays.
            while dirty.popLast() != nil {}
            flushingConnections = dirty
        }
        for connection in dirty where connection.isDirty && connection.isOpen {
            if !connection.flush() {
                dropConnection(connection)
                continue
            }
            if connection.state == .closing && connection.pendingOutput == 0 {
                dropConnection(connection)
                continue
            }
            updateInterest(connection)
            resumeHeldRings(of: connection)
            if connection.pendingOutput < ClientConnection.lowWatermark { releaseDeferredCredits(connection) }
        }
    }

    /// Sends a frame to a client connection (if it is still there and not closing).
    func send(_ frame: Frame, to connectionID: UInt64) {
        guard connectionID != 0, let connection = connections[connectionID], acceptsOutput(connection) else { return }
        queue(frame, on: connection)
    }

    /// True while frames may be queued on the connection (open, and not closing after an `ERROR`).
    private func acceptsOutput(_ connection: ClientConnection) -> Bool {
        connection.isOpen && connection.state != .closing
    }

    /// Completes a client operation with an error or success, with Airlock's message.
    func complete(_ connectionID: UInt64, _ operationID: UInt64, code: UInt32, extendedInformation: String? = nil, message: String) {
        let connection = connectionID == 0 ? nil : connections[connectionID]
        connection?.operations[operationID] = nil
        if code != 0 && !message.isEmpty {
            logger.log(level: code == WSManError.pluginFailed ? .notice : .info, "operation failed: \(message)", metadata: [
                "operation_id": .stringConvertible(operationID), "wsman_error": .string(WSManError.name(code)),
                "connection_id": .stringConvertible(connectionID),
            ])
        }
        guard let connection, acceptsOutput(connection) else { return }
        // Written straight into the frame writer: no Message for the commonest answer.
        encodeFrame {
            CompletionFrame.encodeOperationComplete(
                operationID: operationID, errorCode: code, extendedInformation: extendedInformation, message: message, into: &$0)
        }
        queueEncoded(on: connection)
    }
}

/// `WSMAN_PLUGIN_SHUTDOWN_*` reasons.
enum WSManShutdownReason {
    static let system: UInt32 = 1
    static let service: UInt32 = 2
    static let iisHost: UInt32 = 3
    static let idleTimeoutElapsed: UInt32 = 4

    static func name(_ reason: UInt32) -> String {
        switch reason {
        case system: "WSMAN_PLUGIN_SHUTDOWN_SYSTEM"
        case service: "WSMAN_PLUGIN_SHUTDOWN_SERVICE"
        case iisHost: "WSMAN_PLUGIN_SHUTDOWN_IISHOST"
        case idleTimeoutElapsed: "WSMAN_PLUGIN_SHUTDOWN_IDLETIMEOUT_ELAPSED"
        default: "reason \(reason)"
        }
    }
}
