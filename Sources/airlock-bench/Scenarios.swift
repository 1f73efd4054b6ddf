import AirlockClient
import AirlockPosix
import AirlockProtocol
import Glibc

/// A connection with a noop shell and a command in it: the target of null operations.
struct SignalTarget: Sendable {
    let connection: AirlockConnection
    let shell: Shell
    let command: Command

    /// Connects, creates a shell of `plugin` and runs `commandLine` in it (the noop plug-in
    /// keeps any command but `stream N` open until it is cancelled).
    static func open(
        socketPath: String, plugin: String, commandLine: String = "idle", resultRingSize: Int = AirlockConnection.defaultResultRingSize
    ) async throws(BenchFailure) -> SignalTarget {
        do {
            let connection = try await AirlockConnection.connect(socketPath: socketPath, clientName: "airlock-bench", resultRingSize: resultRingSize)
            let shell = try await connection.createShell(plugin: plugin)
            let command = try await shell.run(commandLine)
            return SignalTarget(connection: connection, shell: shell, command: command)
        } catch {
            throw BenchFailure("cannot open a \(plugin) shell and command on \(socketPath): \(error)")
        }
    }
}

/// The measurements, one method per figure of issue 7.
enum Scenarios {
    // MARK: - Round trip and floor

    /// Round trips (blocking and async Signals, and a supervisor PING) interleaved with the
    /// floors (SOCK_STREAM and SOCK_SEQPACKET ping-pong) in `blocks` rounds, so drift in the
    /// machine's load hits all of them alike. Runs under whatever affinity the process has.
    static func roundTripPhase(
        daemon: BenchDaemon, products: BuildProducts, pinning: String, cpu: Int32?, roundTrips: Int, blocks: Int, warmUp: Int
    ) async throws(BenchFailure) -> RoundTripPhase {
        let socketPath = daemon.socketPath
        let target = try await SignalTarget.open(socketPath: socketPath, plugin: "noop")
        defer { target.connection.close() }
        let streamPartner = try PingPongPartner.start(kind: .stream, products: products)
        defer { streamPartner.stop() }
        let seqpacketPartner = try PingPongPartner.start(kind: .seqPacket, products: products)
        defer { seqpacketPartner.stop() }

        let perBlock = max(roundTrips / blocks, 1)
        var blocking: [UInt64] = [], async: [UInt64] = [], ping: [UInt64] = [], floorStream: [UInt64] = [], floorSeqpacket: [UInt64] = []
        // Warm-up: first calls fault pages in, grow buffers, start worker reader threads.
        _ = try await blockingSignals(target.command, count: warmUp).get()
        _ = try await asyncSignals(target.command, count: warmUp / 2 + 1)
        _ = try await pingPong(streamPartner, count: warmUp).get()
        _ = try await pingPong(seqpacketPartner, count: warmUp).get()
        let workers = daemon.childPIDs()
        var costs: OperationCosts?
        for _ in 0..<blocks {
            floorStream += try await pingPong(streamPartner, count: perBlock).get()
            let before = OperationCosts.Snapshot.take(daemonPID: daemon.pid, workerPIDs: workers)
            blocking += try await blockingSignals(target.command, count: perBlock).get()
            let after = OperationCosts.Snapshot.take(daemonPID: daemon.pid, workerPIDs: workers)
            costs = costs.map { $0 + OperationCosts(operations: perBlock, from: before, to: after) } ?? OperationCosts(operations: perBlock, from: before, to: after)
            floorSeqpacket += try await pingPong(seqpacketPartner, count: perBlock).get()
            async += try await asyncSignals(target.command, count: perBlock)
            ping += try await blockingPings(target.connection, count: perBlock / 4 + 1).get()
        }
        return RoundTripPhase(
            pinning: pinning, pinnedCPU: cpu, blocking: Latency(nanoseconds: blocking), async: Latency(nanoseconds: async),
            floorStream: Latency(nanoseconds: floorStream), floorSeqpacket: Latency(nanoseconds: floorSeqpacket),
            supervisorPing: Latency(nanoseconds: ping), blockingCosts: costs)
    }

    /// `count` Signals with the blocking fast path, on a thread of their own.
    static func blockingSignals(_ command: Command, count: Int) async -> Result<[UInt64], BenchFailure> {
        await BenchThread.run {
            var samples: [UInt64] = []
            samples.reserveCapacity(count)
            for _ in 0..<count {
                let start = SystemClock.monotonicNanoseconds()
                do {
                    try command.signalBlocking(.ctrlC)
                } catch {
                    return .failure(BenchFailure("Command.signalBlocking failed: \(error)"))
                }
                samples.append(SystemClock.monotonicNanoseconds() &- start)
            }
            return .success(samples)
        }
    }

    /// `count` Signals with the async API, from this task.
    static func asyncSignals(_ command: Command, count: Int) async throws(BenchFailure) -> [UInt64] {
        var samples: [UInt64] = []
        samples.reserveCapacity(count)
        for _ in 0..<count {
            let start = SystemClock.monotonicNanoseconds()
            do {
                try await command.signal(.ctrlC)
            } catch {
                throw BenchFailure("Command.signal failed: \(error)")
            }
            samples.append(SystemClock.monotonicNanoseconds() &- start)
        }
        return samples
    }

    /// `count` PING/PONG round trips to the supervisor (one hop), blocking.
    static func blockingPings(_ connection: AirlockConnection, count: Int) async -> Result<[UInt64], BenchFailure> {
        await BenchThread.run {
            var samples: [UInt64] = []
            samples.reserveCapacity(count)
            for _ in 0..<count {
                let start = SystemClock.monotonicNanoseconds()
                do {
                    try connection.pingBlocking()
                } catch {
                    return .failure(BenchFailure("AirlockConnection.pingBlocking failed: \(error)"))
                }
                samples.append(SystemClock.monotonicNanoseconds() &- start)
            }
            return .success(samples)
        }
    }

    static func pingPong(_ partner: PingPongPartner, count: Int) async -> Result<[UInt64], BenchFailure> {
        await BenchThread.run {
            var samples: [UInt64] = []
            samples.reserveCapacity(count)
            do throws(BenchFailure) {
                try partner.measure(count: count, into: &samples)
            } catch {
                return .failure(error)
            }
            return .success(samples)
        }
    }

    // MARK: - Concurrency

    /// `clients` connections, each with its own shell and command, each driven by its own
    /// thread doing blocking Signals back to back for `seconds`.
    static func concurrent(daemon: BenchDaemon, clients: Int, seconds: Double) async throws(BenchFailure) -> Throughput {
        var targets: [SignalTarget] = []
        defer { for target in targets { target.connection.close() } }
        for _ in 0..<clients {
            targets.append(try await SignalTarget.open(socketPath: daemon.socketPath, plugin: "noop"))
        }
        let workers = daemon.childPIDs()
        let gate = LoadGate()
        let commands = targets.map(\.command)
        let outcome = await withTaskGroup(of: Result<Int, BenchFailure>.self) { group -> (results: [Result<Int, BenchFailure>], seconds: Double, before: OperationCosts.Snapshot, after: OperationCosts.Snapshot) in
            for command in commands {
                group.addTask {
                    await BenchThread.run {
                        gate.waitForStart()
                        var operations = 0
                        while gate.isRunning {
                            do {
                                try command.signalBlocking(.ctrlC)
                            } catch {
                                return .failure(BenchFailure("Command.signalBlocking failed under load: \(error)"))
                            }
                            operations += 1
                        }
                        return .success(operations)
                    }
                }
            }
            while gate.readyCount < commands.count {
                try? await Task.sleep(for: .milliseconds(1))
            }
            let before = OperationCosts.Snapshot.take(daemonPID: daemon.pid, workerPIDs: workers)
            let start = SystemClock.monotonicNanoseconds()
            gate.go()
            try? await Task.sleep(for: .milliseconds(Int(seconds * 1000)))
            gate.stop()
            let elapsed = Double(SystemClock.monotonicNanoseconds() &- start) / 1e9
            var results: [Result<Int, BenchFailure>] = []
            for await result in group { results.append(result) }
            let after = OperationCosts.Snapshot.take(daemonPID: daemon.pid, workerPIDs: workers)
            return (results, elapsed, before, after)
        }
        var operations = 0
        for result in outcome.results {
            operations += try result.get()
        }
        return Throughput(clients: clients, operations: operations, seconds: outcome.seconds,
                          costs: OperationCosts(operations: operations, from: outcome.before, to: outcome.after))
    }

    // MARK: - Streaming

    /// One Receive of a `stream N` command: N bytes of plug-in output in 64 KiB results.
    static func stream(daemon: BenchDaemon, bytes: UInt64, path: StreamPath, resultRingSize: Int) async throws(BenchFailure) -> StreamResult {
        let target = try await SignalTarget.open(
            socketPath: daemon.socketPath, plugin: "noop", commandLine: "stream \(bytes)", resultRingSize: resultRingSize)
        defer { target.connection.close() }
        let workers = daemon.childPIDs()
        let before = OperationCosts.Snapshot.take(daemonPID: daemon.pid, workerPIDs: workers)
        let start = SystemClock.monotonicNanoseconds()
        var tally = StreamTally()
        switch path {
        case .blocking:
            let command = target.command
            tally = await BenchThread.run {
                var tally = StreamTally()
                let output = command.outputBlocking()
                do {
                    while let chunk = try output.next() { tally.count(chunk) }
                } catch {
                    tally.failure = "\(error)"
                }
                return tally
            }
        case .async:
            do {
                for try await chunk in target.command.output() { tally.count(chunk) }
            } catch {
                tally.failure = "\(error)"
            }
        }
        let seconds = Double(SystemClock.monotonicNanoseconds() &- start) / 1e9
        let after = OperationCosts.Snapshot.take(daemonPID: daemon.pid, workerPIDs: workers)
        if let failure = tally.failure {
            throw BenchFailure("the stream failed after \(tally.bytes) bytes: \(failure)")
        }
        guard tally.bytes == bytes else {
            throw BenchFailure("the stream delivered \(tally.bytes) bytes, not \(bytes)")
        }
        return StreamResult(
            path: path, bytes: tally.bytes, chunks: tally.chunks, seconds: seconds, costs: OperationCosts(operations: tally.chunks, from: before, to: after))
    }

    /// What a stream delivered.
    private struct StreamTally: Sendable {
        var bytes: UInt64 = 0
        var chunks = 0
        var failure: String?

        mutating func count(_ chunk: OutputChunk) {
            switch chunk.data {
            case .binary(let data): bytes += UInt64(data.count)
            case .text(let text): bytes += UInt64(text.utf8.count)
            case .none, .dword: break
            }
            chunks += 1
        }
    }

    // MARK: - Cold start

    /// For each plug-in (none running): the time from CREATE_SHELL to SHELL_CREATED, which
    /// includes spawning the worker, its sandbox, dlopen and Startup. Each worker is stopped
    /// afterwards (STOP_PLUGIN), untimed. The first plug-in is a warm-up, not counted.
    static func coldStart(socketPath: String, plugins: [String]) async throws(BenchFailure) -> ColdStartResult {
        let connection: AirlockConnection
        do {
            connection = try await AirlockConnection.connect(socketPath: socketPath, clientName: "airlock-bench-cold")
        } catch {
            throw BenchFailure("cannot connect to \(socketPath): \(error)")
        }
        defer { connection.close() }
        var milliseconds: [Double] = []
        for (index, plugin) in plugins.enumerated() {
            let start = SystemClock.monotonicNanoseconds()
            let shell: Shell
            do {
                shell = try await connection.createShell(plugin: plugin)
            } catch {
                throw BenchFailure("the first shell of plug-in \(plugin) failed: \(error)")
            }
            let elapsed = Double(SystemClock.monotonicNanoseconds() &- start) / 1e6
            if index > 0 { milliseconds.append(elapsed) }
            try? await shell.close()
            try? await connection.stopPlugin(plugin)
        }
        return ColdStartResult(milliseconds: milliseconds)
    }

    // MARK: - Scale

    /// Opens `shellsPerPlugin` shells on each of `plugins` and `connections` idle client
    /// connections (handshake done, nothing else), reading airlockd's VmRSS before and after
    /// each step, and measures the round trip on one more shell before, under and after that
    /// load (before and after together are the unloaded reference, which evens out drift in
    /// the machine's load). Give it an airlockd of its own: memory freed by earlier work would
    /// absorb the new allocations and hide them from VmRSS.
    static func scale(
        daemon: BenchDaemon, plugins: [String], shellsPerPlugin: Int, connections: Int, roundTrips: Int
    ) async throws(BenchFailure) -> ScaleResult {
        let socketPath = daemon.socketPath
        let holder: AirlockConnection
        do {
            holder = try await AirlockConnection.connect(socketPath: socketPath, clientName: "airlock-bench-shells")
        } catch {
            throw BenchFailure("cannot connect to \(socketPath): \(error)")
        }
        defer { holder.close() }
        var shells: [Shell] = []
        func createShell(_ plugin: String) async throws(BenchFailure) {
            do {
                shells.append(try await holder.createShell(plugin: plugin))
            } catch {
                throw BenchFailure("shell \(shells.count + 1) (plug-in \(plugin)) failed: \(error)")
            }
        }
        // One shell per plug-in first: every worker runs before the baseline.
        for plugin in plugins { try await createShell(plugin) }
        let probe = try await SignalTarget.open(socketPath: socketPath, plugin: plugins[0])
        defer { probe.connection.close() }
        _ = try await blockingSignals(probe.command, count: min(roundTrips, 2000)).get()
        var unloaded = try await blockingSignals(probe.command, count: roundTrips / 2).get()

        let baseline = try residentBytes(daemon)
        for plugin in plugins {
            for _ in 1..<shellsPerPlugin { try await createShell(plugin) }
        }
        let afterShells = try residentBytes(daemon)

        var idle: [FileDescriptor] = []
        defer { for fd in idle { try? Posix.close(fd) } }
        for index in 0..<connections {
            do {
                idle.append(try openIdleConnection(socketPath))
            } catch {
                throw BenchFailure("idle connection \(index + 1) of \(connections) failed: \(error)")
            }
        }
        // A round trip on the probe: airlockd has accepted every connection before it.
        _ = try await blockingSignals(probe.command, count: 10).get()
        let afterConnections = try residentBytes(daemon)

        _ = try await blockingSignals(probe.command, count: min(roundTrips, 2000)).get()
        let loaded = Latency(nanoseconds: try await blockingSignals(probe.command, count: roundTrips).get())
        let workers = daemon.childPIDs().compactMap { (try? ProcessStatistics.read(pid: $0))?.residentBytes }.reduce(0, +)
        let shellCount = shells.count

        // Unload: the idle connections go, and the shells with the connection that holds them.
        for fd in idle { try? Posix.close(fd) }
        idle.removeAll()
        holder.close()
        shells.removeAll()
        try? await Task.sleep(for: .milliseconds(200))
        _ = try await blockingSignals(probe.command, count: min(roundTrips, 2000)).get()
        unloaded += try await blockingSignals(probe.command, count: roundTrips / 2).get()
        return ScaleResult(
            plugins: plugins.count, shells: shellCount, connections: connections, rssBaseline: baseline,
            rssAfterShells: afterShells, rssAfterConnections: afterConnections, shellsMeasured: shellCount - plugins.count,
            workerRSS: workers, unloaded: Latency(nanoseconds: unloaded), loaded: loaded)
    }

    private static func residentBytes(_ daemon: BenchDaemon) throws(BenchFailure) -> UInt64 {
        guard let bytes = daemon.residentBytes() else { throw BenchFailure("cannot read VmRSS of airlockd (pid \(daemon.pid))") }
        return bytes
    }

    /// A raw client connection that completed the handshake and then stays idle (no reader
    /// thread on this side: a thousand of them cost the benchmark only descriptors).
    static func openIdleConnection(_ socketPath: String) throws(BenchFailure) -> FileDescriptor {
        let fd: FileDescriptor
        do {
            fd = try UnixSocket.connect(path: socketPath)
        } catch {
            throw BenchFailure("connect: \(error)")
        }
        if let failure = handshake(fd) {
            try? Posix.close(fd)
            throw failure
        }
        return fd
    }

    /// Sends HELLO and reads HELLO_ACK; nil when that worked.
    private static func handshake(_ fd: FileDescriptor) -> BenchFailure? {
        let hello = Frame(operationID: 0, message: .hello(Hello(clientName: "airlock-bench-idle"))).encoded()
        let sent = hello.withUnsafeBytes { buffer in Result { () throws(SystemCallError) in try Posix.writeAll(fd, buffer) } }
        if case .failure(let error) = sent { return BenchFailure("sending HELLO: \(error)") }
        var decoder = FrameDecoder(maxFrameSize: ProtocolLimits.handshakeMaxFrameSize)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 16)
        defer { buffer.deallocate() }
        while true {
            let count: Int?
            do {
                count = try Posix.read(fd, into: buffer)
            } catch {
                return BenchFailure("reading HELLO_ACK: \(error)")
            }
            guard let count else { continue }
            if count == 0 { return BenchFailure("airlockd closed the connection during the handshake") }
            decoder.append(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
            let frame: Frame?
            do {
                frame = try decoder.next()
            } catch {
                return BenchFailure("airlockd's answer to HELLO is malformed: \(error)")
            }
            guard let frame else { continue }
            guard case .helloAck = frame.message else {
                return BenchFailure("airlockd answered HELLO with \(frame.message.type.wireName)")
            }
            return nil
        }
    }
}
