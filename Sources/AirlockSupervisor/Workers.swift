import AirlockChannel
import AirlockPosix
import AirlockProtocol
import Glibc
import Logging
import SystemPackage

/// Worker processes: spawning, the channel, callbacks, deaths, deadlines and shutdown.
extension Supervisor {
    /// Bytes of result data a worker may have in flight per operation.
    static let outputWindowBytes: UInt32 = 1 << 20
    /// Credits are returned in batches of this size.
    static let creditBatch: UInt32 = 256 << 10
    static let heartbeatInterval: UInt64 = 5_000_000_000
    static let heartbeatTimeout: UInt64 = 10_000_000_000

    func log(_ plugin: PluginRuntime) -> Logger.Metadata {
        ["plugin": .string(plugin.name), "worker_pid": .stringConvertible(plugin.pid)]
    }

    // MARK: - Submitting

    /// Sends a request to the plug-in's worker, starting the worker when needed.
    func submit(_ plugin: PluginRuntime, operation: UInt64, message: Message, route: Route, connection: ClientConnection?) {
        guard register(plugin, operation: operation, route: route, connection: connection) else { return }
        if plugin.state == .running {
            writeToWorker(plugin, Frame(operationID: operation, message: message))
        } else {
            plugin.queued.append(QueuedRequest(workerOperationID: operation, message: message))
            ensureWorker(plugin)
        }
        // A new shell belongs to the worker generation that will serve it.
        if route.kind == .shell { shells[route.shellID]?.generation = plugin.generation }
    }

    /// Forwards a `SIGNAL` or `RECEIVE` read in place: the worker request is written
    /// straight into the frame writer from the client's bytes.
    func submit(
        _ plugin: PluginRuntime, operation: UInt64, request: ShellRequestPacket, shell: ShellRecord, timeoutMs: UInt32, route: Route,
        connection: ClientConnection
    ) {
        guard register(plugin, operation: operation, route: route, connection: connection) else { return }
        if plugin.state == .running {
            guard plugin.rings != nil else { return }
            encodeFrame {
                request.encodeWorkerRequest(
                    operationID: operation, senderName: connection.peer.userName, authenticationMechanism: connection.peer.authenticationMechanism,
                    resourceURI: shell.resourceURI, locale: Self.defaultLocale, dataLocale: Self.defaultLocale, timeoutMs: timeoutMs,
                    httpURL: connection.peer.httpURL, into: &$0)
            }
            sendEncodedToWorker(plugin)
        } else {
            let context = requestContext(connection.peer, resourceURI: shell.resourceURI, timeoutMs: timeoutMs)
            plugin.queued.append(QueuedRequest(workerOperationID: operation, message: request.workerMessage(context: context)))
            ensureWorker(plugin)
        }
    }

    /// Records a route for a request about to be submitted; answers the request and returns
    /// false when the plug-in takes no requests now (quarantined, or shutting down).
    private func register(_ plugin: PluginRuntime, operation: UInt64, route: Route, connection: ClientConnection?) -> Bool {
        if case .quarantined(let until) = plugin.state {
            let seconds = (until &- SystemClock.monotonicNanoseconds()) / 1_000_000_000
            complete(route.connectionID, route.clientOperationID, code: WSManError.pluginFailed,
                     message: "plug-in '\(plugin.name)' is quarantined after \(plugin.crashTimes.count) crashes in \(plugin.config.restartIntervalSec) s (last: \(plugin.lastExit ?? "unknown")); it accepts operations again in \(seconds) s or after `airlockctl restart \(plugin.name)`")
            dropRouteEffects(plugin, route)
            return false
        }
        if plugin.state == .stopping {
            complete(route.connectionID, route.clientOperationID, code: WSManError.shutdownInProgress,
                     message: "plug-in '\(plugin.name)' is shutting down; retry in a moment")
            dropRouteEffects(plugin, route)
            return false
        }
        plugin.routes[operation] = route
        connection?.operations[route.clientOperationID] = OperationKey(plugin: plugin.name, workerOperationID: operation)
        plugin.lastActivity = loop.now
        return true
    }

    /// Undoes what a route held when it ends without reaching the worker.
    func dropRouteEffects(_ plugin: PluginRuntime, _ route: Route) {
        switch route.kind {
        case .shell:
            if let shell = shells[route.shellID] { forgetShell(shell, plugin: plugin) }
        case .command:
            shells[route.shellID]?.commands[route.commandID] = nil
        case .send:
            if let key = route.sendKey, let shell = shells[route.shellID] { releaseSendKey(key, shell: shell, plugin: plugin) }
        default:
            break
        }
    }

    func writeToWorker(_ plugin: PluginRuntime, _ frame: Frame) {
        guard plugin.rings != nil else { return }
        // Encoded into the kept writer: a frame the channel takes at once costs no allocation.
        encode(frame)
        sendEncodedToWorker(plugin)
    }

    /// Writes the frame in ``frameWriter`` to the worker's request ring (waking a reader
    /// that sleeps on it), or queues a copy when the ring is full or frames wait before it.
    private func sendEncodedToWorker(_ plugin: PluginRuntime) {
        guard let rings = plugin.rings else { return }
        if plugin.pendingWrites.isEmpty {
            let written: Bool
            do {
                written = try frameWriter.withUnsafeBytes { buffer throws(RingError) in try rings.requests.write(buffer) }
            } catch {
                return ringCorrupted(plugin, error)
            }
            if written {
                if rings.requests.consumersAreWaiting { rings.requests.wakeConsumer() }
                return
            }
        }
        plugin.pendingWrites.append(frameWriter.bytes)
        flushWorkerWrites(plugin)
    }

    /// Writes the queued frames that fit the request ring. When some still do not, the
    /// worker is asked to ring the doorbell once it frees space, which calls this again.
    func flushWorkerWrites(_ plugin: PluginRuntime) {
        guard let rings = plugin.rings else { plugin.pendingWrites.removeAll(); return }
        var announced = false
        var wrote = false
        while !plugin.pendingWrites.isEmpty {
            do {
                while let first = plugin.pendingWrites.first {
                    guard try first.withUnsafeBytes({ buffer throws(RingError) in try rings.requests.write(buffer) }) else { break }
                    plugin.pendingWrites.removeFirst()
                    wrote = true
                }
            } catch {
                return ringCorrupted(plugin, error)
            }
            // Full: ask for the doorbell, then look once more (space freed just before the
            // request would ring nothing).
            if plugin.pendingWrites.isEmpty || announced { break }
            rings.requests.announceWaitingForSpace()
            announced = true
        }
        if wrote, rings.requests.consumersAreWaiting { rings.requests.wakeConsumer() }
    }

    func sendCancel(_ plugin: PluginRuntime, operation: UInt64) {
        guard var route = plugin.routes[operation], route.cancelSentAt == 0 else { return }
        route.cancelSentAt = loop.now
        plugin.routes[operation] = route
        writeToWorker(plugin, Frame(operationID: operation, message: .workerCancel))
    }

    func grantCredit(_ plugin: PluginRuntime, operation: UInt64) {
        guard var route = plugin.routes[operation], route.pendingCredit > 0 else { return }
        let bytes = route.pendingCredit
        route.pendingCredit = 0
        plugin.routes[operation] = route
        writeToWorker(plugin, Frame(operationID: operation, message: .workerCredit(bytes: bytes)))
    }

    func releaseDeferredCredits(_ connection: ClientConnection) {
        guard connection.mayHoldCredit, connection.pendingOutput < ClientConnection.lowWatermark else { return }
        var stillHeld = false
        for key in connection.operations.values where key.workerOperationID != 0 {
            guard let plugin = plugins[key.plugin], let route = plugin.routes[key.workerOperationID] else { continue }
            if route.pendingCredit >= Self.creditBatch || (route.pendingCredit > 0 && connection.pendingOutput == 0) {
                grantCredit(plugin, operation: key.workerOperationID)
            } else if route.pendingCredit > 0 {
                stillHeld = true
            }
        }
        connection.mayHoldCredit = stillHeld
    }

    // MARK: - Starting

    /// Starts the worker if none is running or starting.
    func ensureWorker(_ plugin: PluginRuntime) {
        guard plugin.state == .idle, plugin.pid == 0, plugin.restartTimer == nil, !stopping else { return }
        let library = plugin.config.library
        guard access(library, F_OK) == 0 else {
            let message = "plug-in '\(plugin.name)': library \(library) does not exist; fix Filename in its configuration"
            plugin.recordFailure(message)
            logger.error("\(message)", metadata: log(plugin))
            failQueued(plugin, code: WSManError.fileNotPresent, message: message)
            return
        }
        do {
            try spawnWorker(plugin)
        } catch {
            let message = error is ConfigurationError
                ? "\(error)" : "plug-in '\(plugin.name)': cannot start its worker \(config.workerExecutable): \(error)"
            plugin.recordFailure(message)
            logger.error("\(message)", metadata: log(plugin))
            failQueued(plugin, code: WSManError.pluginFailed, message: message)
        }
    }

    private func spawnWorker(_ plugin: PluginRuntime) throws {
        let (ours, theirs) = try UnixSocket.makePair(.seqPacket)
        var cleanup: [FileDescriptor] = [theirs]
        defer { for fd in cleanup { try? Posix.close(fd) } }
        // The rings carry the largest frame either way: a client's frame plus the request
        // context, or a worker's result of up to the envelope size plus its header.
        let (region, regionFD) = try ChannelRegion.create(
            toWorker: ChannelRegion.capacity(forRecordsUpTo: config.maxFrameSize + 8192),
            toSupervisor: ChannelRegion.capacity(forRecordsUpTo: config.maxFrameSize + 65_536))
        cleanup.append(regionFD)
        let rings = WorkerRings(region: region, doorbell: try EventDescriptor())
        let out = try Posix.pipe()
        let err = try Posix.pipe()
        cleanup += [out.write, err.write]
        let stateDirectory = try prepareStateDirectory(plugin)
        plugin.cgroupPath = nil
        if let cgroup {
            do {
                let limits = plugin.config.sandbox
                plugin.cgroupPath = try cgroup.makeWorkerGroup(
                    name: plugin.name, memoryMax: limits.memoryMB * 1024 * 1024, pidsMax: limits.maxTasks)
            } catch {
                logger.warning("cannot create the worker's cgroup: \(error); rlimits still apply", metadata: log(plugin))
            }
        }
        let environment = [
            "SWIFT_BACKTRACE": "enable=no",
            "MALLOC_ARENA_MAX": "2",
            // Output chunks of 64 KiB are allocated and freed constantly: keep the memory.
            "MALLOC_TRIM_THRESHOLD_": "8388608",
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "HOME": stateDirectory,
            "TMPDIR": "/tmp",
            "AIRLOCK_PLUGIN": plugin.name,
        ]
        let pid = try ProcessControl.spawn(
            executable: config.workerExecutable,
            arguments: ["--plugin", plugin.name],
            environment: environment,
            fileDescriptors: [
                .init(source: devNull, target: 0), .init(source: out.write, target: 1),
                .init(source: err.write, target: 2), .init(source: theirs, target: 3),
                .init(source: regionFD, target: 4), .init(source: rings.doorbell.fd, target: 5),
            ],
            newSession: true)
        plugin.generation += 1
        plugin.pid = pid
        plugin.state = .starting
        plugin.startedAt = SystemClock.monotonicNanoseconds()
        plugin.lastActivity = plugin.startedAt
        plugin.channel = ours
        plugin.fatalMessage = nil
        plugin.stopReason = nil
        plugin.exports = 0
        plugin.pingSentAt = 0
        plugin.threadsLeftAfterShutdown = nil
        plugin.channelToken = try loop.register(ours, events: .input) { [unowned self, unowned plugin] events in
            self.channelEvent(plugin, events: events)
        }
        plugin.rings = rings
        rings.doorbellToken = try loop.register(rings.doorbell.fd, events: [.input, .edgeTriggered]) { [unowned self, unowned plugin] _ in
            self.doorbellRang(plugin)
        }
        for (fd, stream) in [(out.read, "stdout"), (err.read, "stderr")] {
            try Posix.setNonBlocking(fd)
            let token = try loop.register(fd, events: .input) { [unowned self, unowned plugin] _ in
                self.pluginOutput(plugin, fd: fd, stream: stream)
            }
            plugin.outputPipes.append((fd, token, stream))
        }
        // Shells of the previous generation are gone; ids keep growing.
        let start = WorkerStart(
            plugin: plugin.name, libraryPath: Self.realPath(plugin.config.library), applicationIdentification: "wsman",
            extraInfo: plugin.config.initializationParameters, startupFlags: plugin.nextStartupFlags,
            maxEnvelopeSize: UInt32(config.maxFrameSize), outputWindowBytes: Self.outputWindowBytes, dropOutput: plugin.config.dropOutput,
            configuration: configurationValues(plugin), sandboxProfile: try sandboxProfile(plugin, stateDirectory: stateDirectory, cgroupPath: plugin.cgroupPath ?? ""))
        plugin.nextStartupFlags = 0
        writeToWorker(plugin, Frame(operationID: 0, message: .workerStart(start)))
        logger.info("started worker", metadata: log(plugin))
    }

    /// The path with every symbolic link resolved (the sandbox binds real folders).
    static func realPath(_ path: String) -> String {
        guard let resolved = realpath(path, nil) else { return path }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    private func configurationValues(_ plugin: PluginRuntime) -> [ConfigurationValue] {
        [
            ConfigurationValue(flag: 1, value: .dword(0)),  // SHAREDHOST: never, one process per plug-in
            ConfigurationValue(flag: 2, value: .text(plugin.config.runAsUser ?? "")),
            ConfigurationValue(flag: 3, value: .dword(plugin.config.autoRestart ? 1 : 0)),
            ConfigurationValue(flag: 4, value: .dword(plugin.config.processIdleTimeoutSec)),
            ConfigurationValue(flag: 5, value: .text(plugin.name)),
        ]
    }

    // MARK: - The channel

    /// The socket half of the channel: `W_FATAL`, anything a plug-in wrote to descriptor
    /// 3, and the end of file of a dying worker. What the worker wrote to its ring before
    /// is handled first.
    private func channelEvent(_ plugin: PluginRuntime, events: Epoll.Events) {
        drainRing(plugin)
        drainChannel(plugin)
    }

    private func doorbellRang(_ plugin: PluginRuntime) {
        drainRing(plugin)
        // The worker also rings when it freed room in the request ring that we wait for.
        if !plugin.pendingWrites.isEmpty { flushWorkerWrites(plugin) }
    }

    /// Frames handled per turn of the event loop from one worker's ring before others get
    /// their turn (the rest are handled on the next turn: nothing rings again for them).
    static let ringBudget = 64

    /// Reads and handles the frames in the worker's ring, up to ``ringBudget``; the rest
    /// wait for the next turn of the event loop. Each record is copied out (checked) before
    /// it is read, and its space published at once, so a worker waiting for room goes on.
    func drainRing(_ plugin: PluginRuntime) {
        guard let rings = plugin.rings else { return }
        // Records are copied into the one ring buffer: a nested drain (none is known) would
        // overwrite the record being handled, so it leaves the records to the next turn.
        guard !drainingChannel else { scheduleDrain(plugin); return }
        drainingChannel = true
        defer { drainingChannel = false }
        let buffer = ringBuffer
        for _ in 0..<Self.ringBudget {
            let record: (count: Int, start: UInt32)
            do {
                // Empty: the head published (and fenced) after the last record came before
                // this look at the tail, so a record written since rings the doorbell.
                guard let next = try rings.answers.peek() else { return }
                record = next
            } catch {
                return ringCorrupted(plugin, error)
            }
            guard record.count <= buffer.count else {
                return recycle(plugin, because: "it sent a \(record.count)-byte frame, above the \(config.maxFrameSize)-byte limit")
            }
            // A large binary result goes to the client straight from the ring: only the
            // bytes around its data are copied out and checked; or it stays there while
            // its client's output is queued. Any other record is copied out whole.
            let relay = record.count >= Self.inPlaceResultBytes ? relayResultInPlace(plugin, rings, record, buffer) : .notInPlace
            if relay == .held { return }
            let handled = relay == .handled
            if !handled { rings.answers.copy(0..<record.count, ofRecordAt: record.start, into: buffer.baseAddress!) }
            rings.answers.skip(recordOf: record.count)
            rings.answers.publish()
            if rings.answers.producerIsWaiting { rings.answers.wakeProducer() }
            if !handled { handleWorkerFrame(bytes: UnsafeRawBufferPointer(rebasing: buffer[0..<record.count]), from: plugin) }
            // A frame may have recycled the worker: the rest of its ring is void.
            guard plugin.rings === rings else { return }
        }
        scheduleDrain(plugin)
    }

    /// Ends a worker whose ring holds impossible values.
    private func ringCorrupted(_ plugin: PluginRuntime, _ error: any Error) {
        recycle(plugin, because: "it corrupted its channel's shared memory (\(error))")
    }

    /// Records at least this large are relayed in place when they are binary results.
    static let inPlaceResultBytes = 16 << 10

    /// The longest a worker's ring holds a result for a client whose output is queued
    /// (the other operations of that worker wait behind it meanwhile).
    static let ringHoldNanoseconds: UInt64 = 1_000_000

    /// What ``relayResultInPlace(_:_:_:_:)`` did with a record.
    enum InPlaceRelay {
        /// Nothing: the record is to be copied out and handled the usual way.
        case notInPlace
        /// Relayed, or found malformed (the worker is being recycled).
        case handled
        /// Left in the ring, unread, for its client (``holdsInRing(_:_:for:)``).
        case held
    }

    /// Relays a binary `W_RESULT` whose data stays in the ring: the bytes before and after
    /// the data are copied to `buffer` (at their offsets in the frame) and checked there,
    /// exactly as a whole copy would be (the check never reads the data bytes); the data
    /// leaves from the ring in the same `sendmsg`, or is copied into the client's queue,
    /// before the record's space is published. A worker changing the data meanwhile can
    /// change only the data its client receives, never the frame around it.
    ///
    /// Returns `.notInPlace` when the record is not such a result, or its data wraps
    /// around the end of the ring (the caller reads it the usual way); `.held` when it
    /// stays in the ring for now (``holdsInRing(_:_:for:)``).
    private func relayResultInPlace(
        _ plugin: PluginRuntime, _ rings: WorkerRings, _ record: (count: Int, start: UInt32), _ buffer: UnsafeMutableRawBufferPointer
    ) -> InPlaceRelay {
        let base = buffer.baseAddress!
        let headCount = min(record.count, 512)
        rings.answers.copy(0..<headCount, ofRecordAt: record.start, into: base)
        guard let range = ResultFrames.binaryDataRange(inResultHead: UnsafeRawBufferPointer(rebasing: buffer[0..<headCount])),
              range.lowerBound <= headCount, range.upperBound <= record.count,
              let data = rings.answers.contiguousBytes(range, ofRecordAt: record.start)
        else { return .notInPlace }
        rings.answers.copy(range.upperBound..<record.count, ofRecordAt: record.start, into: base)
        let checked: ResultFrames.Checked
        do {
            guard let result = try ResultFrames.checkWorkerResult(
                UnsafeRawBufferPointer(rebasing: buffer[0..<record.count]), maxFrameSize: config.maxFrameSize + 4096)
            else { return .notInPlace }
            checked = result
        } catch {
            recycle(plugin, because: "it sent a malformed frame (\(error.message))")
            return .handled
        }
        let head = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<range.lowerBound])
        let tail = UnsafeRawBufferPointer(rebasing: buffer[range.upperBound..<record.count])
        let relayed = relayWorkerResult(checked, from: plugin, holdingIn: rings) { connection, clientOperationID in
            if queueInResultRing(head: UnsafeRawBufferPointer(head), data: data, tail: tail, operationID: clientOperationID, on: connection) { return }
            queueRelayed(head: head, data: data, tail: tail, type: .receiveResult, operationID: clientOperationID, on: connection)
        }
        return relayed ? .handled : .held
    }

    /// Whether a large result of `resultBytes` bytes of data for `connection` (nil: its client is
    /// gone) stays in the ring, unread, rather than being copied into the connection's
    /// output queue: the connection's result ring (PROTOCOL.md §5.6) has no room for it, or,
    /// without one, output is queued there already (so the data cannot leave from the ring
    /// now); the worker is not waiting for ring space; and the ring has held a result for
    /// less than ``ringHoldNanoseconds``. The ring's drain resumes when the client releases
    /// result-ring space or its queued output has been written (``resumeHeldRings(of:)``),
    /// or when the hold expires (the result is then queued the usual way). The client
    /// reading slowly thus slows its worker through the ring, as its credit would, without
    /// a copy.
    private func holdsInRing(_ plugin: PluginRuntime, _ rings: WorkerRings, for connection: ClientConnection?, resultBytes: Int) -> Bool {
        let clientBehind = connection.map { connection in
            if let ring = connection.resultRing { return !ring.cursor.hasRoom(for: resultBytes) }
            return connection.pendingOutput > 0
        } ?? false
        guard let connection, clientBehind, !rings.answers.producerIsWaiting else {
            rings.holdingSince = 0
            return false
        }
        let now = SystemClock.monotonicNanoseconds()
        if rings.holdingSince == 0 {
            rings.holdingSince = now
            scheduleDrain(plugin, afterNanoseconds: Self.ringHoldNanoseconds)
        } else if now &- rings.holdingSince >= Self.ringHoldNanoseconds {
            rings.holdingSince = 0
            return false
        }
        if !connection.ringsAwaitingOutput.contains(where: { $0 === plugin }) { connection.ringsAwaitingOutput.append(plugin) }
        return true
    }

    /// Resumes the drains of the rings holding results for `connection`, once its queued
    /// output has been written or it closed.
    func resumeHeldRings(of connection: ClientConnection) {
        guard !connection.ringsAwaitingOutput.isEmpty, connection.pendingOutput == 0 || !connection.isOpen || connection.resultRing != nil else { return }
        for plugin in connection.ringsAwaitingOutput { scheduleDrain(plugin) }
        connection.ringsAwaitingOutput.removeAll()
    }

    /// Drains the worker's ring again on the next turn of the event loop.
    private func scheduleDrain(_ plugin: PluginRuntime, afterNanoseconds delay: UInt64 = 0) {
        let generation = plugin.generation
        _ = loop.schedule(afterNanoseconds: delay) { [unowned self, weak plugin] in
            guard let plugin, plugin.generation == generation else { return }
            self.drainRing(plugin)
        }
    }

    /// Closes both halves of the channel: the socket and the rings (with their doorbell).
    /// Frames still queued for the worker are dropped.
    private func closeChannel(_ plugin: PluginRuntime) {
        if let channel = plugin.channel {
            loop.unregister(channel, token: plugin.channelToken)
            try? Posix.close(channel)
            plugin.channel = nil
        }
        if let rings = plugin.rings {
            loop.unregister(rings.doorbell.fd, token: rings.doorbellToken)
            plugin.rings = nil
        }
        plugin.pendingWrites.removeAll()
    }

    /// Reads and handles the packets waiting on the channel's socket, a `recvmmsg` batch
    /// per system call: a batch that is not full means the socket was empty; after 16 full
    /// batches the loop moves on and the level-triggered registration reports the rest.
    func drainChannel(_ plugin: PluginRuntime) {
        // Handling a packet never drains a channel again; if it ever did, the batch's
        // buffers would be overwritten under the loop, so the inner call leaves its packets
        // queued for the next turn of the event loop instead.
        guard !drainingChannel else { return }
        drainingChannel = true
        defer { drainingChannel = false }
        let batch = packetBatch
        var batches = 0
        while let channel = plugin.channel, batches < 16 {
            batches += 1
            let received: Int
            do {
                guard let count = try Posix.receivePackets(channel, into: batch, flags: .dontWait) else { return }
                received = count
            } catch {
                channelClosed(plugin, why: "its channel failed: \(error)")
                return
            }
            let generation = plugin.generation
            for index in 0..<received {
                // A packet may have recycled the worker: the rest of the batch is void.
                guard plugin.channel == channel, plugin.generation == generation else { return }
                switch batch.result(index) {
                case .wouldBlock:
                    return
                case .endOfFile:
                    return channelClosed(plugin, why: "it closed its channel")
                case .truncated(_, let size):
                    return recycle(plugin, because: "it sent a \(size)-byte frame, above the \(config.maxFrameSize)-byte limit")
                case .packet:
                    handleWorkerFrame(bytes: batch.bytes(index), from: plugin)
                }
            }
            if received < batch.slots { return }
        }
    }

    /// Handles one frame from the worker (a ring record or a socket packet), checked and
    /// read where it lies. A malformed one recycles the worker.
    private func handleWorkerFrame(bytes packet: UnsafeRawBufferPointer, from plugin: PluginRuntime) {
        // Results (the bulk of the traffic) are checked in place and relayed under a
        // header rewritten in place: sent from here when nothing is queued ahead of them
        // on the client's connection, else copied into its output. Completions (one per
        // operation) are read in place too.
        do {
            if let checked = try ResultFrames.checkWorkerResult(packet, maxFrameSize: config.maxFrameSize + 4096) {
                // The packet sits in airlockd's own buffer: its header is rewritten there.
                relayWorkerResult(checked, from: plugin) { connection, clientOperationID in
                    queueRelayed(UnsafeMutableRawBufferPointer(mutating: packet), type: .receiveResult, operationID: clientOperationID, on: connection)
                }
                return
            }
            if let (op, completion) = try CompletionFrame.readWorkerComplete(packet, maxFrameSize: config.maxFrameSize + 4096) {
                return workerCompleted(plugin, operation: op, completion)
            }
        } catch {
            return recycle(plugin, because: "it sent a malformed frame (\(error.message))")
        }
        let frame: Frame
        do {
            // Copied into the reused buffer (the decoder reads arrays): no allocation.
            scratchBytes.removeAll(keepingCapacity: scratchBytes.capacity <= 64 << 10)
            scratchBytes.append(contentsOf: packet)
            frame = try Frame.decode(scratchBytes, maxFrameSize: config.maxFrameSize + 4096)
        } catch {
            return recycle(plugin, because: "it sent a malformed frame (\(error.message))")
        }
        handleWorkerFrame(frame, from: plugin)
    }

    private func channelClosed(_ plugin: PluginRuntime, why: String) {
        guard plugin.channel != nil else { return }
        closeChannel(plugin)
        // Usually the process is dying anyway and its exit status says why; give it a
        // moment to finish dying. If it is still there, it is killed, and the closed
        // channel becomes the reason.
        plugin.channelClosedReason = why
        let generation = plugin.generation
        loop.schedule(afterNanoseconds: 250_000_000) { [unowned self, unowned plugin] in
            guard plugin.generation == generation, plugin.pid != 0 else { return }
            self.killWorker(plugin)
        }
    }

    private func handleWorkerFrame(_ frame: Frame, from plugin: PluginRuntime) {
        let op = frame.operationID
        switch frame.message {
        case .workerReady(let ready):
            guard plugin.state == .starting, op == 0 else { return nonsense(plugin, frame) }
            workerReady(plugin, ready)
        case .workerContext:
            guard var route = plugin.routes[op], route.kind == .shell || route.kind == .command else { return nonsense(plugin, frame) }
            route.deadline = 0
            let connectionID = route.connectionID, clientOp = route.clientOperationID
            route.connectionID = 0
            route.clientOperationID = 0
            plugin.routes[op] = route
            connections[connectionID]?.operations[clientOp] = nil
            if route.kind == .shell, let shell = shells[route.shellID] {
                shell.ready = true
                send(Frame(operationID: clientOp, flags: .final, message: .shellCreated(ShellCreated(shellID: shell.id, plugin: plugin.name, resourceURI: shell.resourceURI))), to: connectionID)
                if shell.closing { sendCancel(plugin, operation: op) }
            } else if route.kind == .command, let command = shells[route.shellID]?.commands[route.commandID] {
                command.ready = true
                send(Frame(operationID: clientOp, flags: .final, message: .commandCreated(commandID: command.id)), to: connectionID)
            }
            plugin.recordLatency(loop.now &- route.startedAt)
        case .workerResult(let result):
            guard let route = plugin.routes[op], route.kind == .receive else { return nonsense(plugin, frame) }
            forwardResult(plugin, operation: op, route: route, creditBytes: Self.creditSize(result.streamResult)) { connection, clientOperationID in
                queue(Frame(operationID: clientOperationID, message: .receiveResult(result)), on: connection)
            }
        case .workerComplete(let completion):
            workerCompleted(plugin, operation: op, completion)
        case .workerBreach(let message):
            let key = String(message.prefix(80))
            if plugin.reportedBreaches.insert(key).inserted {
                logger.warning("plug-in broke the API contract: \(message)", metadata: log(plugin))
                plugin.recordFailure("contract breach: \(message)")
            }
        case .workerFatal(let message):
            plugin.fatalMessage = message
            logger.error("worker reports a fatal error: \(message)", metadata: log(plugin))
        case .workerShutdownDone(let done):
            plugin.threadsLeftAfterShutdown = done.threadsLeft
            if done.threadsLeft > 0 {
                logger.warning("WSManPluginShutdown returned with \(done.threadsLeft) plug-in thread(s) still running; they end with the worker process", metadata: log(plugin))
                plugin.recordFailure("Shutdown left \(done.threadsLeft) thread(s) running (ended with the worker)")
            }
            if done.errorCode != 0 {
                logger.warning("WSManPluginShutdown returned \(WSManError.name(done.errorCode))", metadata: log(plugin))
            }
        case .workerReportCompletion(let flags):
            logger.info("plug-in called WSManPluginReportCompletion (flags \(flags))", metadata: log(plugin))
        case .pong:
            plugin.pingSentAt = 0
        case .ping(let token):
            writeToWorker(plugin, Frame(operationID: op, flags: .final, message: .pong(token: token)))
        default:
            nonsense(plugin, frame)
        }
    }

    /// A `W_COMPLETE`: ends its operation, or recycles the worker when no such operation is
    /// in flight.
    private func workerCompleted(_ plugin: PluginRuntime, operation op: UInt64, _ completion: WorkerComplete) {
        guard let route = plugin.routes.removeValue(forKey: op) else {
            return nonsense(plugin, .workerComplete, operation: op)
        }
        operationCompleted(plugin, operation: op, route: route, completion)
    }

    /// Relays a checked `W_RESULT` (not text) to the Receive it belongs to, as a
    /// `RECEIVE_RESULT` with the payload bytes as they are (`enqueue` queues them); a
    /// result for anything else recycles the worker. With `rings`, the result may stay in
    /// that ring instead (``holdsInRing(_:_:for:)``): then nothing happens and it returns
    /// false.
    @discardableResult
    private func relayWorkerResult(
        _ checked: ResultFrames.Checked, from plugin: PluginRuntime, holdingIn rings: WorkerRings? = nil,
        _ enqueue: (ClientConnection, _ clientOperationID: UInt64) -> Void
    ) -> Bool {
        let op = checked.operationID
        guard let route = plugin.routes[op], route.kind == .receive else {
            nonsense(plugin, .workerResult, operation: op)
            return true
        }
        return forwardResult(plugin, operation: op, route: route, creditBytes: checked.dataByteCount, holdingIn: rings, enqueue)
    }

    /// Counts a result's bytes against its Receive's credit and queues it for the client
    /// (`enqueue`); credit goes back to the worker once a batch has been queued while the
    /// client keeps up, or at once when nobody receives the result any more. With `rings`,
    /// a result the ring holds (``holdsInRing(_:_:for:)``) is neither counted nor queued,
    /// and it returns false.
    @discardableResult
    private func forwardResult(
        _ plugin: PluginRuntime, operation op: UInt64, route: Route, creditBytes: UInt32, holdingIn rings: WorkerRings? = nil,
        _ enqueue: (ClientConnection, _ clientOperationID: UInt64) -> Void
    ) -> Bool {
        let connection = route.connectionID != 0 ? connections[route.connectionID] : nil
        // A binary result's credit is its data's byte count.
        if let rings, holdsInRing(plugin, rings, for: connection, resultBytes: Int(creditBytes)) { return false }
        var route = route
        route.pendingCredit &+= creditBytes
        plugin.routes[op] = route
        guard let connection else {
            grantCredit(plugin, operation: op)
            return true
        }
        enqueue(connection, route.clientOperationID)
        if connection.pendingOutput < ClientConnection.highWatermark && route.pendingCredit >= Self.creditBatch {
            grantCredit(plugin, operation: op)
        } else {
            connection.mayHoldCredit = true
        }
        return true
    }

    static func creditSize(_ data: WSManData) -> UInt32 {
        switch data {
        case .none, .dword: 0
        case .binary(let bytes): UInt32(bytes.count)
        case .text(let text): UInt32(text.utf8.count)
        }
    }

    private func nonsense(_ plugin: PluginRuntime, _ frame: Frame) {
        nonsense(plugin, frame.message.type, operation: frame.operationID)
    }

    private func nonsense(_ plugin: PluginRuntime, _ type: MessageType, operation: UInt64) {
        recycle(plugin, because: "it sent an unexpected \(type.wireName) frame for operation \(operation) (the worker channel is untrusted; a plug-in may have written to it)")
    }

    private func workerReady(_ plugin: PluginRuntime, _ ready: WorkerReady) {
        plugin.sandboxReport = ready.sandbox
        plugin.exports = ready.exports
        guard ready.errorCode == 0 else {
            let message = ready.message.isEmpty ? "plug-in '\(plugin.name)' failed to start: \(WSManError.name(ready.errorCode))" : ready.message
            plugin.recordFailure(message)
            plugin.stopReason = "it failed to start"
            logger.error("\(message)", metadata: log(plugin))
            failQueued(plugin, code: ready.errorCode, message: message)
            plugin.state = .stopping
            return
        }
        plugin.state = .running
        plugin.readyAt = SystemClock.monotonicNanoseconds()
        let unavailable = ready.sandbox.filter { $0.state.hasPrefix("unavailable") }
        for layer in unavailable {
            logger.warning("sandbox layer \(layer.name) is \(layer.state)", metadata: log(plugin))
        }
        logger.info("worker ready in \((plugin.readyAt &- plugin.startedAt) / 1000) µs", metadata: log(plugin))
        let queued = plugin.queued
        plugin.queued.removeAll()
        for request in queued where plugin.routes[request.workerOperationID] != nil {
            writeToWorker(plugin, Frame(operationID: request.workerOperationID, message: request.message))
        }
    }

    /// Fails every request waiting for the worker to start.
    func failQueued(_ plugin: PluginRuntime, code: UInt32, message: String) {
        let queued = plugin.queued
        plugin.queued.removeAll()
        for request in queued {
            guard let route = plugin.routes.removeValue(forKey: request.workerOperationID) else { continue }
            complete(route.connectionID, route.clientOperationID, code: code, message: message)
            dropRouteEffects(plugin, route)
        }
    }

    // MARK: - Completions

    private func operationCompleted(_ plugin: PluginRuntime, operation: UInt64, route: Route, _ completion: WorkerComplete) {
        let now = loop.now
        if route.deadline != 0 || route.kind == .shell || route.kind == .command {
            plugin.recordLatency(now &- route.startedAt)
        }
        var code = completion.errorCode
        var message = ""
        if route.timedOut && code != 0 {
            code = WSManError.operationTimedOut
            message = "\(route.kind.entryPoint) of plug-in '\(plugin.name)' did not finish within its deadline; it was cancelled"
        } else if code != 0 {
            message = "plug-in '\(plugin.name)' completed \(route.kind.entryPoint) with \(WSManError.name(code))"
        }
        switch route.kind {
        case .shell:
            guard let shell = shells[route.shellID] else { return }
            if !shell.ready {
                if code == 0 {
                    code = WSManError.invalidProviderResponse
                    message = "plug-in '\(plugin.name)' completed WSManPluginShell without reporting a shell context (WSManPluginReportContext)"
                }
                complete(route.connectionID, route.clientOperationID, code: code, extendedInformation: completion.extendedInformation, message: message)
            }
            finishShell(shell, plugin: plugin, code: code, extendedInformation: completion.extendedInformation, message: message)
        case .command:
            guard let shell = shells[route.shellID], let command = shell.commands.removeValue(forKey: route.commandID) else { return }
            if !command.ready {
                if code == 0 {
                    code = WSManError.invalidProviderResponse
                    message = "plug-in '\(plugin.name)' completed WSManPluginCommand without reporting a command context"
                }
                complete(route.connectionID, route.clientOperationID, code: code, extendedInformation: completion.extendedInformation, message: message)
            } else {
                send(Frame(operationID: 0, message: .commandEnded(CommandEnded(
                    shellID: shell.id, commandID: command.id, errorCode: code, extendedInformation: completion.extendedInformation, message: message))),
                     to: shell.attachedConnection)
            }
        case .send:
            complete(route.connectionID, route.clientOperationID, code: code, extendedInformation: completion.extendedInformation, message: message)
            if let key = route.sendKey, let shell = shells[route.shellID] { releaseSendKey(key, shell: shell, plugin: plugin) }
        case .receive, .signal, .connect:
            if route.kind == .receive && route.cancelledByClient && code != 0 && !route.timedOut {
                message = "cancelled by the client"
            }
            complete(route.connectionID, route.clientOperationID, code: code, extendedInformation: completion.extendedInformation, message: message)
        }
    }

    /// A shell ended: tell its client, answer close requests, forget it.
    func finishShell(_ shell: ShellRecord, plugin: PluginRuntime, code: UInt32, extendedInformation: String?, message: String) {
        if shell.ready {
            send(Frame(operationID: 0, message: .shellClosed(ShellClosed(shellID: shell.id, errorCode: code, extendedInformation: extendedInformation, message: message))),
                 to: shell.attachedConnection)
        }
        for waiter in shell.closeWaiters {
            complete(waiter.connection, waiter.operation, code: 0, message: "")
        }
        forgetShell(shell, plugin: plugin)
    }

    func forgetShell(_ shell: ShellRecord, plugin: PluginRuntime) {
        shells[shell.id] = nil
        plugin.shells.remove(shell.id)
        connections[shell.attachedConnection]?.shells.remove(shell.id)
        for (_, queue) in shell.sendQueues {
            for queued in queue {
                complete(queued.connectionID, queued.clientOperationID, code: WSManError.shellAlreadyClosed, message: "shell \(shell.id) closed before this input was sent")
            }
        }
        shell.sendQueues.removeAll()
    }

    // MARK: - Output of plug-ins

    private func pluginOutput(_ plugin: PluginRuntime, fd: FileDescriptor, stream: String) {
        var chunk = [UInt8](repeating: 0, count: 16_384)
        for _ in 0..<16 {
            let count: Int?
            do {
                count = try chunk.withUnsafeMutableBytes { buffer throws(SystemCallError) in try Posix.read(fd, into: buffer) }
            } catch {
                closePipe(plugin, fd: fd)
                return
            }
            guard let count else { return }
            if count == 0 {
                closePipe(plugin, fd: fd)
                flushLines(plugin, stream: stream, final: true)
                return
            }
            plugin.lineBuffers[stream, default: []].append(contentsOf: chunk[0..<count])
            flushLines(plugin, stream: stream, final: false)
        }
    }

    private func flushLines(_ plugin: PluginRuntime, stream: String, final: Bool) {
        guard var buffer = plugin.lineBuffers[stream] else { return }
        while let newline = buffer.firstIndex(of: 10) {
            emitPluginLine(plugin, stream: stream, bytes: buffer[..<newline])
            buffer.removeSubrange(...newline)
        }
        if buffer.count > 4096 || (final && !buffer.isEmpty) {
            emitPluginLine(plugin, stream: stream, bytes: buffer[...])
            buffer.removeAll()
        }
        plugin.lineBuffers[stream] = buffer
    }

    private func emitPluginLine(_ plugin: PluginRuntime, stream: String, bytes: ArraySlice<UInt8>) {
        let now = SystemClock.monotonicNanoseconds()
        if !outputRateLimiter.allow(plugin.name, now: now) { return }
        let text = String(decoding: bytes.prefix(4096), as: UTF8.self)
        if stream == "stderr" && !text.isEmpty { plugin.lastErrorLine = String(text.prefix(300)) }
        var metadata = log(plugin)
        metadata["stream"] = .string(stream)
        if let suppressed = outputRateLimiter.takeSuppressed(plugin.name), suppressed > 0 {
            logger.warning("\(suppressed) line(s) of plug-in output suppressed by the rate limit", metadata: log(plugin))
        }
        logger.info("\(text)", metadata: metadata)
    }

    private func closePipe(_ plugin: PluginRuntime, fd: FileDescriptor) {
        guard let index = plugin.outputPipes.firstIndex(where: { $0.fd == fd }) else { return }
        loop.unregister(fd, token: plugin.outputPipes[index].token)
        try? Posix.close(fd)
        plugin.outputPipes.remove(at: index)
    }

    // MARK: - Ending workers

    /// Asks the worker to shut down (cancel everything, `WSManPluginShutdown`), and kills
    /// it if it has not exited within the grace period.
    func stopWorker(_ plugin: PluginRuntime, reason: UInt32, why: String) {
        if let timer = plugin.restartTimer {
            loop.cancelTimer(timer)
            plugin.restartTimer = nil
        }
        failQueued(plugin, code: WSManError.shutdownInProgress, message: "plug-in '\(plugin.name)' is stopping: \(why)")
        guard plugin.pid != 0 else {
            if plugin.state != .idle, case .quarantined = plugin.state {} else { plugin.state = .idle }
            finishStopWaiters(plugin)
            return
        }
        guard plugin.state != .stopping else { return }
        let wasRunning = plugin.state == .running
        plugin.state = .stopping
        plugin.stopReason = why
        logger.info("stopping worker: \(why) (\(WSManShutdownReason.name(reason)))", metadata: log(plugin))
        if wasRunning {
            writeToWorker(plugin, Frame(operationID: 0, message: .workerShutdown(WorkerShutdown(reason: reason, graceMs: plugin.config.cancelGraceMs))))
            let limit = UInt64(plugin.config.cancelGraceMs) * 1_000_000 + 5_000_000_000
            let generation = plugin.generation
            plugin.shutdownTimer = loop.schedule(afterNanoseconds: limit) { [unowned self, unowned plugin] in
                guard plugin.generation == generation, plugin.pid != 0 else { return }
                self.logger.warning("worker did not exit within the shutdown grace period; killing it", metadata: self.log(plugin))
                plugin.stopReason = (plugin.stopReason ?? why) + "; WSManPluginShutdown did not return in time, so the worker was killed"
                self.killWorker(plugin)
            }
        } else {
            killWorker(plugin)
        }
    }

    /// Kills the worker's process group now; the exit is handled when it is reaped.
    func killWorker(_ plugin: PluginRuntime) {
        guard plugin.pid > 0 else { return }
        if let cgroup, let path = plugin.cgroupPath { try? cgroup.kill(path) }
        _ = try? ProcessControl.killProcessGroup(plugin.pid, signal: SIGKILL)
        _ = try? ProcessControl.kill(plugin.pid, signal: SIGKILL)
    }

    /// Ends a misbehaving worker: its operations fail with `because` in the message.
    func recycle(_ plugin: PluginRuntime, because: String) {
        guard plugin.pid != 0 else { return }
        if plugin.stopReason == nil { plugin.stopReason = because }
        logger.error("recycling worker: \(because)", metadata: log(plugin))
        closeChannel(plugin)
        killWorker(plugin)
    }

    func reapWorkers() {
        while let (pid, status) = (try? ProcessControl.reapAny()) ?? nil {
            guard let plugin = plugins.values.first(where: { $0.pid == pid }) else { continue }
            workerExited(plugin, status: status)
        }
        if stopping { checkStopped() }
    }

    private func workerExited(_ plugin: PluginRuntime, status: WaitStatus) {
        // Frames written just before death (W_FATAL, completions) come first.
        drainRing(plugin)
        if plugin.channel != nil { drainChannel(plugin) }
        closeChannel(plugin)
        for pipe in plugin.outputPipes {
            pluginOutput(plugin, fd: pipe.fd, stream: pipe.stream)
        }
        for pipe in plugin.outputPipes {
            loop.unregister(pipe.fd, token: pipe.token)
            try? Posix.close(pipe.fd)
        }
        plugin.outputPipes.removeAll()
        if let timer = plugin.shutdownTimer { loop.cancelTimer(timer); plugin.shutdownTimer = nil }
        let pid = plugin.pid
        plugin.pid = 0
        // Nothing the plug-in started may outlive its worker.
        if let cgroup, let path = plugin.cgroupPath {
            try? cgroup.kill(path)
            try? cgroup.remove(path)
        }
        _ = try? ProcessControl.killProcessGroup(pid, signal: SIGKILL)
        let intentional = plugin.state == .stopping
        let clean: Bool = if case .exited(0) = status { true } else { false }
        // Entry points whose operation was in flight (a Shell or Command counts only while
        // it is being created; afterwards it stays outstanding for its whole life).
        var inProgress = Set(plugin.routes.values.filter(\.awaitsAnswer).map(\.kind.entryPoint))
        // Before W_READY the worker was loading the library or in WSManPluginStartup.
        let diedStarting = plugin.state == .starting
        if diedStarting { inProgress = ["WSManPluginStartup"] }
        if case .signaled(SIGKILL, _) = status, plugin.stopReason == nil, let why = plugin.channelClosedReason {
            plugin.stopReason = why
        }
        plugin.channelClosedReason = nil
        var cause = "its worker (pid \(pid)) \(status)"
        if let fatal = plugin.fatalMessage { cause += " (\(fatal))" }
        if let reason = plugin.stopReason, !intentional || !clean { cause += " because \(reason)" }
        if !inProgress.isEmpty { cause += " while \(inProgress.sorted().joined(separator: ", ")) was in progress" }
        if plugin.fatalMessage == nil, case .exited(let code) = status, code != 0, let last = plugin.lastErrorLine {
            cause += "; its last words: \(last)"
        }
        plugin.lastErrorLine = nil
        let crashed = !intentional
        plugin.lastExit = "\(status)" + (plugin.fatalMessage.map { " (\($0))" } ?? "")
        if crashed {
            logger.error("plug-in '\(plugin.name)' failed: \(cause)", metadata: ["plugin": .string(plugin.name), "worker_pid": .stringConvertible(pid)])
            plugin.recordFailure("failed: \(cause)")
        } else {
            logger.info("worker exited: \(status)", metadata: ["plugin": .string(plugin.name), "worker_pid": .stringConvertible(pid)])
        }
        // Every operation in flight completes now, children before parents.
        let code = intentional && !crashed ? WSManError.shutdownInProgress : WSManError.pluginFailed
        let what = crashed ? "plug-in '\(plugin.name)' failed: \(cause)" : "plug-in '\(plugin.name)' was stopped: \(plugin.stopReason ?? "shutdown")"
        let routes = plugin.routes.sorted { $0.value.kind.cancelOrder < $1.value.kind.cancelOrder }
        plugin.routes.removeAll()
        failQueued(plugin, code: code, message: what)
        for (_, route) in routes {
            switch route.kind {
            case .shell:
                guard let shell = shells[route.shellID] else { continue }
                if !shell.ready {
                    complete(route.connectionID, route.clientOperationID, code: code, message: what + "; the shell was not created")
                }
                for command in shell.commands.values where command.ready {
                    send(Frame(operationID: 0, message: .commandEnded(CommandEnded(shellID: shell.id, commandID: command.id, errorCode: code, message: what))), to: shell.attachedConnection)
                }
                finishShell(shell, plugin: plugin, code: code, extendedInformation: nil, message: what + "; the shell was closed")
            case .command:
                if let shell = shells[route.shellID], let command = shell.commands[route.commandID], !command.ready {
                    complete(route.connectionID, route.clientOperationID, code: code, message: what)
                }
            default:
                if route.timedOut {
                    complete(route.connectionID, route.clientOperationID, code: WSManError.operationTimedOut,
                             message: "\(route.kind.entryPoint) of plug-in '\(plugin.name)' did not finish within its deadline; it was cancelled and then " + what)
                } else {
                    complete(route.connectionID, route.clientOperationID, code: code, message: what)
                }
            }
        }
        for shellID in plugin.shells {
            if let shell = shells[shellID] { finishShell(shell, plugin: plugin, code: code, extendedInformation: nil, message: what) }
        }
        plugin.shells.removeAll()
        plugin.state = .idle
        finishStopWaiters(plugin)
        if !plugin.config.enabled && !pluginOrder.contains(plugin.name) { unregister(plugin) }
        if crashed { countCrash(plugin) }
        if stopping { checkStopped() }
    }

    /// Drops a plug-in from the table (a reload removed it and its worker is gone).
    func unregister(_ plugin: PluginRuntime) {
        guard plugins[plugin.name] === plugin else { return }
        plugins[plugin.name] = nil
        plugin.isRegistered = false
    }

    private func finishStopWaiters(_ plugin: PluginRuntime) {
        let waiters = plugin.stopWaiters
        plugin.stopWaiters.removeAll()
        var restart = false
        for waiter in waiters {
            complete(waiter.connection, waiter.operation, code: 0, message: "")
            restart = restart || waiter.restart
        }
        if restart && !stopping {
            ensureWorker(plugin)
        }
    }

    /// Counts a crash; quarantines on a crash loop; restarts with back-off when
    /// AutoRestart is set.
    private func countCrash(_ plugin: PluginRuntime) {
        let now = SystemClock.monotonicNanoseconds()
        let window = UInt64(plugin.config.restartIntervalSec) * 1_000_000_000
        plugin.crashTimes = plugin.crashTimes.filter { now &- $0 < window } + [now]
        plugin.restarts += 1
        if plugin.crashTimes.count > plugin.config.restartBurst {
            plugin.state = .quarantined(until: now &+ window)
            let message = "quarantined: \(plugin.crashTimes.count) crashes within \(plugin.config.restartIntervalSec) s (RestartLimit Burst \(plugin.config.restartBurst)); operations fail until the window passes or `airlockctl restart \(plugin.name)`"
            logger.error("\(message)", metadata: ["plugin": .string(plugin.name)])
            plugin.recordFailure(message)
            return
        }
        guard plugin.config.autoRestart && !stopping else { return }
        // Back off: 100 ms doubling per recent crash, at most 10 s.
        let delay = min(UInt64(100_000_000) << UInt64(max(plugin.crashTimes.count - 1, 0)), 10_000_000_000)
        plugin.nextStartupFlags = 2  // WSMAN_PLUGIN_STARTUP_AUTORESTARTED_CRASH
        plugin.restartTimer = loop.schedule(afterNanoseconds: delay) { [unowned self, unowned plugin] in
            plugin.restartTimer = nil
            self.logger.info("restarting after a crash (AutoRestart)", metadata: ["plugin": .string(plugin.name)])
            self.ensureWorker(plugin)
        }
    }

    // MARK: - Deadlines, heartbeats, idle

    func checkDeadlines(now: UInt64) {
        for plugin in plugins.values where plugin.state == .running || plugin.state == .starting {
            var expired: [UInt64] = []
            var overdue: (UInt64, Route)?
            let grace = UInt64(plugin.config.cancelGraceMs) * 1_000_000
            for (operation, route) in plugin.routes {
                if route.deadline != 0 && now >= route.deadline && route.cancelSentAt == 0 {
                    expired.append(operation)
                } else if route.cancelSentAt != 0 && now &- route.cancelSentAt > grace && (route.deadline != 0 || route.kind != .shell || route.cancelledByClient || shells[route.shellID]?.closing == true) {
                    overdue = (operation, route)
                }
            }
            for operation in expired {
                plugin.routes[operation]?.timedOut = true
                if plugin.state == .starting, let index = plugin.queued.firstIndex(where: { $0.workerOperationID == operation }) {
                    plugin.queued.remove(at: index)
                    if let route = plugin.routes.removeValue(forKey: operation) {
                        complete(route.connectionID, route.clientOperationID, code: WSManError.operationTimedOut, message: "plug-in '\(plugin.name)' did not start within the operation's deadline")
                        dropRouteEffects(plugin, route)
                    }
                    continue
                }
                sendCancel(plugin, operation: operation)
            }
            if let (operation, route) = overdue {
                recycle(plugin, because: "\(route.kind.entryPoint) (operation \(operation)) was cancelled but not completed within the grace period of \(plugin.config.cancelGraceMs) ms")
            }
        }
    }

    func workerHousekeeping(_ plugin: PluginRuntime, now: UInt64) {
        if case .quarantined(let until) = plugin.state, now >= until {
            plugin.state = .idle
            plugin.crashTimes.removeAll()
            logger.info("quarantine over", metadata: ["plugin": .string(plugin.name)])
        }
        guard plugin.state == .running else {
            if plugin.state == .starting && now &- plugin.startedAt > 30_000_000_000 {
                recycle(plugin, because: "it did not report ready within 30 s (a hanging WSManPluginStartup?)")
            }
            return
        }
        if plugin.pingSentAt != 0 {
            if now &- plugin.pingSentAt > Self.heartbeatTimeout {
                recycle(plugin, because: "it stopped answering heartbeats for \(Self.heartbeatTimeout / 1_000_000_000) s")
            }
        } else if now &- plugin.readyAt > Self.heartbeatInterval && now % Self.heartbeatInterval < 1_000_000_000 {
            plugin.pingSentAt = now
            writeToWorker(plugin, Frame(operationID: 0, message: .ping(token: now)))
        }
        let idle = UInt64(plugin.config.processIdleTimeoutSec) * 1_000_000_000
        if idle > 0 && plugin.routes.isEmpty && plugin.shells.isEmpty && now &- plugin.lastActivity > idle {
            stopWorker(plugin, reason: WSManShutdownReason.idleTimeoutElapsed, why: "idle for \(plugin.config.processIdleTimeoutSec) s (ProcessIdleTimeoutSec)")
        }
    }
}
