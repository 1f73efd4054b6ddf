import AirlockClient
import AirlockPosix
import AirlockProtocol
import CAirlockShims
import Foundation
import Glibc
import Testing

/// The result ring (PROTOCOL.md §5.6): large results written into shared memory the client
/// offered, checked from both sides — a raw client that follows the protocol by hand, and
/// AirlockClient, which offers a ring by default.
@Suite("Result ring")
struct ResultRingTests {
    /// A raw client reading the hostile plug-in's numbered flood through its ring: every
    /// result arrives whole and in order, from the ring while the client releases space,
    /// and through the socket while it does not (the server waits for a release only
    /// briefly); meanwhile the same worker serves another client.
    @Test func everyResultArrivesInOrderThroughTheRingOrTheSocket() async throws {
        try await Daemon.withHostile { daemon in
            let client = try await RawClient(socketPath: daemon.socketPath)
            defer { client.close() }
            let ring = try OfferedRing(size: 1 << 20)
            let open = try client.offer(ring)
            let opened = try await client.readUntilFinal(of: open).final
            guard case .operationComplete(let answer) = opened.message, answer.errorCode == 0 else {
                throw HarnessError("OPEN_RESULT_RING was refused: \(opened.message)")
            }
            let (shellID, commandID) = try await client.startFlood()
            let receive = try client.request(.receive(ReceiveOutput(shellID: shellID, commandID: commandID, timeoutMs: 600_000)))

            var cursor = ResultRingCursor(size: ring.size)
            var expected: UInt64 = 0
            var throughRing = 0
            var throughSocket = 0
            var socketWhileUnreleased = 0
            reading: while expected < 320 {
                let frame = try await client.readFrame()
                guard frame.operationID == receive else { continue }
                let data: [UInt8]
                switch frame.message {
                case .receiveResultInRing(let inRing):
                    let offset = try cursor.accept(position: inRing.position, length: inRing.length)
                    data = Array(UnsafeRawBufferPointer(start: ring.memory.base + offset, count: Int(inRing.length)))
                    throughRing += 1
                case .receiveResult(let result):
                    guard case .binary(let bytes) = result.streamResult else {
                        Issue.record("result \(expected) of the flood: \(result.streamResult) instead of binary data")
                        break reading
                    }
                    data = bytes
                    throughSocket += 1
                    if (96..<192).contains(expected) { socketWhileUnreleased += 1 }
                default:
                    Issue.record("result \(expected) of the flood: \(frame.message.type.wireName) instead")
                    break reading
                }
                let sequence = data.prefix(8).reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
                guard data.count == 65_536, sequence == expected, data.dropFirst(8).allSatisfy({ $0 == UInt8(truncatingIfNeeded: expected) }) else {
                    Issue.record("result \(expected) of the flood arrived as result \(sequence) of \(data.count) bytes, or damaged")
                    break reading
                }
                expected += 1
                // Results 96..<192: the client releases nothing, so the ring fills.
                if !(96..<192).contains(expected), let position = cursor.releaseRead(batch: 1) {
                    try client.write(Frame(operationID: 0, message: .releaseResultRing(position: position)))
                }
                if expected % 64 == 0 {
                    let line = "meanwhile \(expected)"
                    #expect(try await daemon.runOnce("hostile", "echo \(line)", timeout: .seconds(30)).stdoutText == line + "\n")
                }
            }
            #expect(expected == 320)
            #expect(throughRing >= 32, "results through the ring: \(throughRing) of 320")
            #expect(socketWhileUnreleased > 0, "while the ring was full, results kept coming through the socket")
            try client.cancel(receive)
            let end = try await client.readUntilFinal(of: receive, timeout: .seconds(60)).final
            guard case .operationComplete(let complete) = end.message else { throw HarnessError("the Receive ended with \(end.message)") }
            #expect(complete.errorCode == WSManError.operationAborted, "\(complete)")
            try await daemon.expectSupervisorUp()
        }
    }

    /// Offers the server cannot use are refused with a reason, and the connection goes on.
    @Test func unusableOffersAreRefusedWithTheReason() async throws {
        try await Daemon.with { daemon in
            let client = try await RawClient(socketPath: daemon.socketPath)
            defer { client.close() }
            func refusal(_ open: UInt64) async throws -> String {
                let answer = try await client.readUntilFinal(of: open).final
                guard case .operationComplete(let complete) = answer.message else { throw HarnessError("OPEN_RESULT_RING answered \(answer.message)") }
                #expect(complete.errorCode == WSManError.invalidParameter, "\(complete)")
                return complete.message
            }

            // No descriptor at all.
            let bare = try client.request(.openResultRing(size: 1 << 20))
            #expect(try await refusal(bare).contains("without a memory file's descriptor"))

            // A pipe is not a memory file.
            let pipe = try Posix.pipe()
            defer { try? Posix.close(pipe.read); try? Posix.close(pipe.write) }
            #expect(try await refusal(client.offer(pipe.read, size: 1 << 20)).contains("not a memory file"))

            // A memory file that could shrink under the server's mapping.
            let unsealed = FileDescriptor(rawValue: airlock_memfd_create("unsealed"))
            defer { try? Posix.close(unsealed) }
            #expect(ftruncate(unsealed.rawValue, 1 << 20) == 0)
            #expect(try await refusal(client.offer(unsealed, size: 1 << 20)).contains("not sealed against shrinking"))

            // Sizes: not a multiple of 4096, too small, larger than the file.
            let ring = try OfferedRing(size: 1 << 20)
            #expect(try await refusal(client.offer(ring.descriptor, size: (1 << 20) - 100)).contains("multiple of 4096"))
            #expect(try await refusal(client.offer(ring.descriptor, size: 4096)).contains("multiple of 4096 from 65536"))
            #expect(try await refusal(client.offer(ring.descriptor, size: 2 << 20)).contains("fewer than the"))

            // A good offer, then a second one.
            let accepted = try await client.readUntilFinal(of: client.offer(ring)).final
            guard case .operationComplete(let complete) = accepted.message else { throw HarnessError("\(accepted.message)") }
            #expect(complete.errorCode == 0, "\(complete)")
            let second = try OfferedRing(size: 1 << 20)
            #expect(try await refusal(client.offer(second)).contains("has a result ring already"))

            // The connection still works.
            let ping = try client.request(.ping(token: 7))
            guard case .pong(let token) = try await client.readUntilFinal(of: ping).final.message else { throw HarnessError("no PONG") }
            #expect(token == 7)
        }
    }

    /// Descriptors that no OPEN_RESULT_RING takes, and releases that break the rules, are
    /// protocol errors: the connection closes with an ERROR saying why, and the server goes
    /// on serving others.
    @Test func strayDescriptorsAndBadReleasesCloseTheConnection() async throws {
        try await Daemon.with { daemon in
            let stray = try OfferedRing(size: 1 << 20)

            let descriptors = try await RawClient(socketPath: daemon.socketPath)
            defer { descriptors.close() }
            // One stray descriptor waits for an OPEN_RESULT_RING; a second one is an error.
            try descriptors.write(Frame(operationID: 1, message: .ping(token: 1)), passing: stray.descriptor)
            try descriptors.write(Frame(operationID: 2, message: .ping(token: 2)), passing: stray.descriptor)
            #expect(try await descriptors.readError().contains("no OPEN_RESULT_RING takes"))

            let noRing = try await RawClient(socketPath: daemon.socketPath)
            defer { noRing.close() }
            try noRing.write(Frame(operationID: 0, message: .releaseResultRing(position: 0)))
            #expect(try await noRing.readError().contains("without a result ring"))

            let beyond = try await RawClient(socketPath: daemon.socketPath)
            defer { beyond.close() }
            let ring = try OfferedRing(size: 1 << 20)
            _ = try await beyond.readUntilFinal(of: beyond.offer(ring))
            try beyond.write(Frame(operationID: 0, message: .releaseResultRing(position: 4096)))
            #expect(try await beyond.readError().contains("must not go back nor pass the end"))

            try await daemon.expectSupervisorUp()
        }
    }

    /// AirlockClient offers a ring with its first output: the output arrives through it,
    /// whole, and once the connection closes the server has freed the ring's pages.
    @Test func airlockClientStreamsThroughItsRing() async throws {
        try await Daemon.withHostile { daemon in
            let connection = try await daemon.connect()
            defer { connection.close() }
            #expect(!connection.usesResultRing)
            let shell = try await connection.createShell(ShellRequest(plugin: "hostile"))
            let command = try await shell.run("flood")
            let checked = try await onPlainThreadReturning { () throws(AirlockError) -> UInt64 in
                let output = command.outputBlocking()
                var expected: UInt64 = 0
                while expected < 256, let chunk = try output.next() {
                    guard case .binary(let data) = chunk.data else { break }
                    let sequence = data.prefix(8).reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
                    guard data.count == 65_536, sequence == expected, data.last == UInt8(truncatingIfNeeded: expected) else { break }
                    expected += 1
                }
                output.cancel()
                return expected
            }.get()
            #expect(checked == 256, "results whole and in order: \(checked) of 256")
            #expect(connection.usesResultRing, "the result ring was not used: \(connection.resultRingRefusal ?? "no answer")")
            let supervisor = try await connection.statusReport().supervisor
            #expect(supervisor?.resultRings == 1 && supervisor?.resultRingBytes == AirlockConnection.defaultResultRingSize, "status: \(String(describing: supervisor))")
        }
    }

    /// The server frees a ring's pages when the connection closes: a client still mapping
    /// it reads zeros.
    @Test func theServerFreesTheRingWhenTheConnectionCloses() async throws {
        try await Daemon.withHostile { daemon in
            let client = try await RawClient(socketPath: daemon.socketPath)
            let ring = try OfferedRing(size: 256 << 10)
            _ = try await client.readUntilFinal(of: client.offer(ring))
            let (shellID, commandID) = try await client.startFlood()
            let receive = try client.request(.receive(ReceiveOutput(shellID: shellID, commandID: commandID, timeoutMs: 600_000)))
            var written = false
            while !written {
                let frame = try await client.readFrame()
                if frame.operationID == receive, case .receiveResultInRing = frame.message { written = true }
            }
            #expect(ring.residentBytes() > 0)
            client.close()
            let deadline = ContinuousClock.now + .seconds(30)
            while ring.residentBytes() > 0 && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(ring.residentBytes() == 0, "the ring still holds data after its connection closed")
            try await daemon.expectSupervisorUp()
        }
    }

    /// A server whose configuration turns rings off (`MaxResultRingkb` 0) refuses the offer
    /// and says so; output travels through the socket.
    @Test func ringsTurnedOffStillDeliverOutput() async throws {
        try await Daemon.withHostile(FaultConfiguration(topLevel: ["MaxResultRingkb": 0])) { daemon in
            let connection = try await daemon.connect()
            defer { connection.close() }
            let shell = try await connection.createShell(ShellRequest(plugin: "hostile"))
            let command = try await shell.run("flood")
            var count = 0
            for try await chunk in command.output() {
                guard case .binary(let data) = chunk.data else {
                    Issue.record("a result without binary data: \(chunk.data)")
                    break
                }
                #expect(data.count == 65_536)
                count += 1
                if count == 64 { break }
            }
            #expect(count == 64)
            #expect(!connection.usesResultRing)
            #expect(connection.resultRingRefusal?.contains("MaxResultRingkb 0") == true, "\(connection.resultRingRefusal ?? "nil")")
        }
    }
}

/// A result ring a test offers: a sealed memory file, mapped for reading.
struct OfferedRing {
    let size: Int
    let descriptor: FileDescriptor
    let memory: SharedMemory

    init(size: Int) throws {
        self.size = size
        let fd = try MemoryFile.create(name: "test-ring", size: size)
        descriptor = fd
        memory = try SharedMemory.mapReadOnly(fd, size: size)
    }

    /// The bytes of the ring's pages that hold anything but zeros.
    func residentBytes() -> Int {
        var pages = 0
        for page in stride(from: 0, to: size, by: 4096) {
            let words = UnsafeRawBufferPointer(start: memory.base + page, count: 4096)
            if words.contains(where: { $0 != 0 }) { pages += 1 }
        }
        return pages * 4096
    }
}

extension RawClient {
    /// Sends `frame` with `descriptor` attached to its first byte (SCM_RIGHTS).
    func write(_ frame: Frame, passing descriptor: FileDescriptor) throws {
        let bytes = frame.encoded()
        let sent = try bytes.withUnsafeBytes { (buffer: UnsafeRawBufferPointer) throws -> Int? in
            try Posix.send(fd, buffer, passing: descriptor)
        }
        guard sent == bytes.count else { throw HarnessError("sent \(sent ?? 0) of \(bytes.count) bytes with a descriptor") }
    }

    /// Sends `OPEN_RESULT_RING` offering `descriptor` as a ring of `size` bytes; returns its id.
    func offer(_ descriptor: FileDescriptor, size: Int) throws -> UInt64 {
        let operation = newOperationID()
        try write(Frame(operationID: operation, message: .openResultRing(size: UInt32(size))), passing: descriptor)
        return operation
    }

    /// Offers `ring`.
    func offer(_ ring: OfferedRing) throws -> UInt64 {
        try offer(ring.descriptor, size: ring.size)
    }

    /// Creates a shell of the hostile plug-in and starts its numbered flood.
    func startFlood() async throws -> (shellID: UInt64, commandID: UInt64) {
        let create = try request(.createShell(CreateShell(plugin: "hostile")))
        guard case .shellCreated(let shell) = try await readUntilFinal(of: create).final.message else {
            throw HarnessError("CREATE_SHELL did not create a shell")
        }
        let run = try request(.runCommand(RunCommand(shellID: shell.shellID, commandLine: "flood")))
        guard case .commandCreated(let commandID) = try await readUntilFinal(of: run).final.message else {
            throw HarnessError("RUN_COMMAND did not start flood")
        }
        return (shell.shellID, commandID)
    }

    /// Reads until the server's `ERROR` frame and the end of the connection; returns the
    /// error's message.
    func readError() async throws -> String {
        while true {
            let frame = try await readFrame()
            if frame.operationID == 0, case .error(let report) = frame.message {
                #expect(report.errorCode == WSManError.invalidParameter, "\(report)")
                do {
                    let after = try await readFrame(timeout: .seconds(30))
                    Issue.record("a frame after the ERROR: \(after.message.type.wireName)")
                } catch {
                    #expect("\(error)".contains("closed the connection"), "the connection did not close after the ERROR: \(error)")
                }
                return report.message
            }
        }
    }
}
