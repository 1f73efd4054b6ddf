import AirlockClient
import AirlockProtocol
import Testing

/// The worker channel's rings end to end: output far larger than a ring crosses it whole
/// and in order, whether its results are relayed in place from the ring or copied out
/// (where a result wraps around the ring's end).
@Suite("Worker channel rings")
struct ChannelRingTests {
    @Test("six MiB through cat: every byte arrives, in order, while the rings wrap many times")
    func largeOutputCrossesTheRings() async throws {
        try await Daemon.with { daemon in
            let connection = try await daemon.connect()
            defer { connection.close() }
            let shell = try await connection.createShell(plugin: "echo")
            let command = try await shell.run("cat")
            // A pattern that no shifted or repeated block matches: a byte of each block's
            // number, then a running counter.
            let total = 6 << 20
            var input = [UInt8](repeating: 0, count: total)
            for index in 0..<total { input[index] = UInt8(truncatingIfNeeded: index &* 7 &+ index >> 16) }
            async let output = command.collectOutput()
            var offset = 0
            var step = 0
            while offset < total {
                // Uneven sends: results of many sizes, so records straddle the ring's end.
                let size = min([200_000, 333_333, 61_440, 250_001][step % 4], total - offset)
                try await command.send(Array(input[offset..<(offset + size)]))
                offset += size
                step += 1
            }
            try await command.send([], endOfStream: true)
            let collected = try await output
            #expect(collected.stdout.count == total)
            if let first = zip(collected.stdout, input).enumerated().first(where: { $0.element.0 != $0.element.1 }) {
                Issue.record("the output differs from the input first at byte \(first.offset)")
            }
            #expect(collected.exitCode == 0)
            try await shell.close()
        }
    }

    @Test("a client that reads in bursts gets every result whole and in order, while its worker serves others")
    func burstyReaderGetsEveryResultInOrder() async throws {
        try await Daemon.withHostile { daemon in
            // A raw client: it reads only when it wants to, so airlockd finds its socket
            // full, and large results wait in the worker's ring (or, past the hold, in
            // airlockd's queue) meanwhile.
            let client = try await RawClient(socketPath: daemon.socketPath)
            defer { client.close() }
            let create = try client.request(.createShell(CreateShell(plugin: "hostile")))
            guard case .shellCreated(let shell) = try await client.readUntilFinal(of: create).final.message else {
                throw HarnessError("CREATE_SHELL did not create a shell")
            }
            let run = try client.request(.runCommand(RunCommand(shellID: shell.shellID, commandLine: "flood")))
            guard case .commandCreated(let commandID) = try await client.readUntilFinal(of: run).final.message else {
                throw HarnessError("RUN_COMMAND did not start flood")
            }
            let receive = try client.request(.receive(ReceiveOutput(shellID: shell.shellID, commandID: commandID, timeoutMs: 600_000)))

            var expected: UInt64 = 0
            reading: while expected < 384 {
                let frame = try await client.readFrame()
                guard frame.operationID == receive else { continue }
                guard case .receiveResult(let result) = frame.message, case .binary(let data) = result.streamResult else {
                    Issue.record("result \(expected) of the flood: \(frame.message.type.wireName) instead")
                    break reading
                }
                let sequence = data.prefix(8).reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
                guard data.count == 65_536, sequence == expected,
                      data.dropFirst(8).allSatisfy({ $0 == UInt8(truncatingIfNeeded: expected) }) else {
                    Issue.record("result \(expected) of the flood arrived as result \(sequence) of \(data.count) bytes, or damaged")
                    break reading
                }
                expected += 1
                // A pause in reading, during which the same worker answers another client.
                if expected % 32 == 0 {
                    let line = "meanwhile \(expected)"
                    #expect(try await daemon.runOnce("hostile", "echo \(line)", timeout: .seconds(30)).stdoutText == line + "\n")
                }
            }
            try client.cancel(receive)
            let end = try await client.readUntilFinal(of: receive, timeout: .seconds(60)).final
            guard case .operationComplete(let complete) = end.message else { throw HarnessError("the Receive ended with \(end.message)") }
            #expect(complete.errorCode == WSManError.operationAborted, "\(complete)")
            try await daemon.expectSupervisorUp()
        }
    }
}
