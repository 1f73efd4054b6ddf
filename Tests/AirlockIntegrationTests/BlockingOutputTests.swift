import AirlockClient
import AirlockProtocol
import Foundation
import Synchronization
import Testing

/// `Command.outputBlocking()`: a thread takes a Receive's results itself, reading the socket
/// when no other thread does, while other operations share the connection.
@Suite("Blocking output")
struct BlockingOutputTests {
    /// Checks that `chunk` is result `expected` of the hostile plug-in's flood (whole, in
    /// order); returns what is wrong with it, or nil.
    static func floodDamage(_ chunk: OutputChunk, expected: UInt64) -> String? {
        guard case .binary(let data) = chunk.data else { return "result \(expected) has no binary data: \(chunk.data)" }
        let sequence = data.prefix(8).reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        // The filler is checked at a few places only: every byte, in a debug build, would
        // make the check slower than the stream.
        let filler = UInt8(truncatingIfNeeded: expected)
        guard data.count == 65_536, sequence == expected, [8, 4096, 32_768, 65_535].allSatisfy({ data[$0] == filler }) else {
            return "result \(expected) arrived as result \(sequence) of \(data.count) bytes, or damaged"
        }
        return nil
    }

    @Test("a thread reads a flood itself: every result whole and in order, while async pings and its own blocking sends share the connection; cancel ends it with ERROR_OPERATION_ABORTED")
    func floodInOrderBesideOtherOperations() async throws {
        try await Daemon.withHostile { daemon in
            let connection = try await daemon.connect()
            defer { connection.close() }
            let floodShell = try await connection.createShell(plugin: "hostile")
            let flood = try await floodShell.run("flood")
            let echoShell = try await connection.createShell(plugin: "echo")
            let cat = try await echoShell.run("cat")

            // Async operations from a task on the same connection, during the first half:
            // the reader thread has to take the socket back for them, and give it up again.
            let pinging = Atomic<Bool>(true)
            let pings = Task {
                var count = 0
                while pinging.load(ordering: .relaxed) {
                    _ = try await connection.ping()
                    count += 1
                }
                return count
            }
            // Opening it sends the Receive and does not wait: async code may do that.
            let output = BlockingOutputBox(flood.outputBlocking())
            /// Reads results `range` of the flood; returns what was wrong, if anything.
            @Sendable func read(_ range: Range<UInt64>, sendingEvery interval: UInt64) throws(AirlockError) -> String? {
                for expected in range {
                    guard let chunk = try output.value.next() else { return "the flood ended after \(expected) results" }
                    if let damage = Self.floodDamage(chunk, expected: expected) { return damage }
                    // A blocking call of this same thread between two results: it must not
                    // wait for a socket that this thread's own output holds.
                    if (expected + 1) % interval == 0 { try cat.sendBlocking(Array("line \(expected + 1)\n".utf8)) }
                }
                return nil
            }
            let first = await onPlainThreadReturning { () throws(AirlockError) in try read(0..<512, sendingEvery: 64) }
            pinging.store(false, ordering: .relaxed)
            let pingCount = try await pings.value
            #expect(first == .success(nil), "\(first)")
            // The second half alone, a pause of the consumer, then a cancel: what still comes
            // is only what was on its way when the consumer paused (the credit window,
            // airlockd's and the sockets' buffers, one receive), not whatever the flood would
            // have produced meanwhile.
            let second = await onPlainThreadReturning { () throws(AirlockError) -> (problem: String?, afterCancel: Int, end: AirlockError?) in
                if let problem = try read(512..<1024, sendingEvery: 1024) { return (problem, 0, nil) }
                usleep(2_000_000)
                output.value.cancel()
                var afterCancel = 0
                do throws(AirlockError) {
                    while let chunk = try output.value.next() {
                        if let damage = Self.floodDamage(chunk, expected: 1024 + UInt64(afterCancel)) { return ("after cancel: " + damage, afterCancel, nil) }
                        afterCancel += 1
                    }
                    return ("the cancelled Receive ended without an error", afterCancel, nil)
                } catch {
                    return (nil, afterCancel, error)
                }
            }
            if case .success(let (problem, afterCancel, end)) = second {
                #expect(problem == nil, "\(problem ?? "")")
                #expect(end?.code == WSManError.operationAborted, "the cancelled Receive ended with \(String(describing: end))")
                // About 100 here; with the reader thread reading for a paused consumer, some 1,600.
                #expect(afterCancel < 400, "\(afterCancel) results (of 64 KiB) came after the cancel")
            } else {
                Issue.record("the blocking output failed: \(second)")
            }
            #expect(pingCount > 0)
            // What the blocking sends wrote came back through cat, in order.
            try await cat.send([], endOfStream: true)
            let echoed = try await cat.collectOutput(deadline: .now + .seconds(60))
            #expect(echoed.stdoutText == (1...8).map { "line \($0 * 64)\n" }.joined() + "line 1024\n")
            #expect(connection.failure == nil)
            try await echoShell.close()
            try await floodShell.close()
        }
    }

    @Test("releasing a blocking output before its end cancels the Receive; the connection's reader takes what still comes")
    func releasingCancels() async throws {
        try await Daemon.withHostile { daemon in
            let connection = try await daemon.connect()
            defer { connection.close() }
            let shell = try await connection.createShell(plugin: "hostile")
            let flood = try await shell.run("flood")
            let idle = try await daemon.faultStatus().worker("hostile").operationsInFlight
            let read = await onPlainThreadReturning { () throws(AirlockError) -> Int in
                let output = flood.outputBlocking()
                var count = 0
                while count < 8, try output.next() != nil { count += 1 }
                return count
                // `output` is released here, in the middle of the flood.
            }
            #expect((try? read.get()) == 8, "\(read)")
            // The Receive ends (the worker has no more operations in flight than before it),
            // and the connection goes on serving.
            let deadline = ContinuousClock.now + .seconds(30)
            var inFlight = try await daemon.faultStatus().worker("hostile").operationsInFlight
            while inFlight > idle && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
                inFlight = try await daemon.faultStatus().worker("hostile").operationsInFlight
            }
            #expect(inFlight == idle, "the released output's Receive is still in flight (\(inFlight) operations, \(idle) before it)")
            _ = try await connection.ping()
            // A new blocking output on a new flood works on the same connection.
            let second = try await shell.run("flood")
            let again = await onPlainThreadReturning { () throws(AirlockError) -> String? in
                let output = second.outputBlocking()
                for expected in UInt64(0)..<4 {
                    guard let chunk = try output.next() else { return "the second flood ended early" }
                    if let damage = Self.floodDamage(chunk, expected: expected) { return damage }
                }
                output.cancel()
                while try output.next() != nil {}
                return "the cancelled Receive ended without an error"
            }
            switch again {
            case .success(let problem): Issue.record("\(problem ?? "")")
            case .failure(let error): #expect(error.code == WSManError.operationAborted, "\(error)")
            }
            try await shell.close()
        }
    }

    @Test("closing the connection while a thread waits in next() ends the wait with an error")
    func closeWhileWaiting() async throws {
        try await Daemon.withHostile { daemon in
            let connection = try await daemon.connect()
            let shell = try await connection.createShell(plugin: "hostile")
            let waiting = try await shell.run("wait")
            let started = Atomic<Bool>(false)
            async let ending = onPlainThreadReturning { () throws(AirlockError) -> OutputChunk? in
                let output = waiting.outputBlocking()
                started.store(true, ordering: .relaxed)
                return try output.next()
            }
            while !started.load(ordering: .relaxed) { try await Task.sleep(for: .milliseconds(10)) }
            try await Task.sleep(for: .milliseconds(200))
            connection.close()
            // If closing did not end the wait, this would never return (no timing here: a
            // busy machine took 14 s once).
            let result = await ending
            switch result {
            case .success(let chunk): Issue.record("next() returned \(String(describing: chunk)) after the connection closed")
            case .failure(let error): #expect(error.kind == .connectionLost, "\(error)")
            }
            // A new blocking output on the closed connection fails at once.
            let after = await onPlainThreadReturning { () throws(AirlockError) -> OutputChunk? in
                try waiting.outputBlocking().next()
            }
            if case .success(let chunk) = after { Issue.record("a blocking output on a closed connection returned \(String(describing: chunk))") }
            try await daemon.expectSupervisorUp()
        }
    }
}

/// A ``BlockingOutput`` handed from one plain thread to the next (one uses it at a time).
final class BlockingOutputBox: @unchecked Sendable {
    let value: BlockingOutput
    init(_ value: BlockingOutput) { self.value = value }
}
