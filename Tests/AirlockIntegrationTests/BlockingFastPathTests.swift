@testable import AirlockClient
import AirlockProtocol
import Foundation
import Testing

/// The client's blocking fast path: SIGNAL and SEND written straight into the writer, their
/// successful answers taken in place by the caller that reads them, and the operations
/// table that keeps one operation in a slot of its own.
@Suite("Blocking fast path")
struct BlockingFastPathTests {
    @Test("32 callers at once on one sandboxed worker: its reader threads contend for the channel's rings, every call is answered, the worker never restarts")
    func manyCallersOnOneSandboxedWorker() async throws {
        var configuration = FaultConfiguration()
        configuration.echo["Quotas"] = ["MaxShellsPerUser": 100, "MaxConcurrentOperationsPerUser": 100]
        try await Daemon.withHostile(configuration) { daemon in
            let before = try await daemon.faultStatus().worker("echo")
            // Sixteen clients, two threads each.
            let failures = await withTaskGroup(of: [String].self) { group in
                for _ in 0..<16 {
                    group.addTask {
                        do {
                            let connection = try await daemon.connect()
                            defer { connection.close() }
                            let shell = try await connection.createShell(plugin: "echo")
                            let command = try await shell.run("cat")
                            let failures = await withTaskGroup(of: AirlockError?.self) { threads in
                                for _ in 0..<2 {
                                    threads.addTask {
                                        await onPlainThread { () throws(AirlockError) in
                                            for _ in 0..<200 { try command.signalBlocking(.ctrlC) }
                                        }
                                    }
                                }
                                var failures: [String] = []
                                for await failure in threads { if let failure { failures.append("\(failure)") } }
                                return failures
                            }
                            try await command.send([], endOfStream: true)
                            try await shell.close()
                            return failures
                        } catch {
                            return ["\(error)"]
                        }
                    }
                }
                var failures: [String] = []
                for await some in group { failures += some }
                return failures
            }
            #expect(failures.isEmpty, "\(failures)")
            let after = try await daemon.faultStatus().worker("echo")
            #expect(after.restarts == before.restarts && after.lastExit == before.lastExit, "the worker restarted: \(after.lastExit ?? "")")
        }
    }

    @Test("blocking signals in a row, from several threads at once, with async calls beside them; a failed signal still fails")
    func blockingSignals() async throws {
        try await Daemon.with { daemon in
            let connection = try await daemon.connect()
            defer { connection.close() }
            let shell = try await connection.createShell(plugin: "echo")
            let command = try await shell.run("cat")
            // One thread: the reader parks and the caller takes each answer in place.
            let alone = await onPlainThread { () throws(AirlockError) in
                for _ in 0..<300 { try command.signalBlocking(.ctrlC) }
            }
            #expect(alone == nil)
            // Several threads and async calls at once: answers are handed over or read by
            // whichever caller reads, and every call ends.
            async let pings: Void = { for _ in 0..<50 { _ = try await connection.ping() } }()
            let failures = await withTaskGroup(of: AirlockError?.self) { group in
                for index in 0..<3 {
                    group.addTask {
                        await onPlainThread { () throws(AirlockError) in
                            for round in 0..<100 {
                                try command.signalBlocking(.ctrlC)
                                if round % 25 == index { try command.sendBlocking(Array("\(index)".utf8)) }
                            }
                        }
                    }
                }
                var failures: [AirlockError] = []
                for await failure in group { if let failure { failures.append(failure) } }
                return failures
            }
            #expect(failures.isEmpty, "\(failures)")
            try await pings
            // A signal the server refuses comes back as the error, and the connection goes on.
            let refused = await onPlainThread { () throws(AirlockError) in
                try connection.signalBlocking(shellID: shell.id &+ 1_000_000, commandID: 0, code: .ctrlC)
            }
            #expect(refused?.kind == .operationFailed, "\(String(describing: refused))")
            #expect(connection.failure == nil)
            let after = await onPlainThread { () throws(AirlockError) in
                for _ in 0..<20 { try command.signalBlocking(.ctrlC) }
            }
            #expect(after == nil)
            try await command.send([], endOfStream: true)
            try await shell.close()
            // After close, a blocking signal fails at once.
            connection.close()
            let closed = await onPlainThread { () throws(AirlockError) in try command.signalBlocking(.ctrlC) }
            #expect(closed != nil)
        }
    }

    @Test("the operations table: the first operation in its slot, others in the dictionary, found and removed alike")
    func operationTable() {
        func operation(_ shellID: UInt64) -> PendingOperation {
            PendingOperation(waiter: .unattached, request: .signal, shellID: shellID, commandID: 0)
        }
        var table = OperationTable()
        #expect(table.isEmpty && table.count == 0)
        table[1] = operation(10)
        table[2] = operation(20)
        table[3] = operation(30)
        #expect(table.count == 3 && !table.isEmpty)
        #expect(table[1]?.shellID == 10 && table[2]?.shellID == 20 && table[3]?.shellID == 30 && table[4] == nil)
        table[2] = operation(21)  // update in the dictionary
        table[1] = operation(11)  // update in the slot
        #expect(table[1]?.shellID == 11 && table[2]?.shellID == 21)
        let first = table.removeValue(forKey: 1)
        #expect(first?.shellID == 11)
        #expect(table[1] == nil && table.count == 2)
        // The slot is free, but operation 3 is in the dictionary: updating it stays there.
        table[3] = operation(31)
        #expect(table[3]?.shellID == 31 && table.count == 2)
        table[4] = operation(40)  // into the free slot
        #expect(table.count == 3 && table[4]?.shellID == 40)
        table[3] = nil
        #expect(table[3] == nil && table.count == 2)
        let unknown = table.removeValue(forKey: 99), zero = table.removeValue(forKey: 0)
        #expect(unknown == nil && zero == nil)
        let removed = table.removeAll { $0.shellID >= 40 }
        #expect(removed.map(\.shellID) == [40] && table.count == 1 && table[2]?.shellID == 21)
        let rest = table.removeAll { _ in true }
        #expect(rest.map(\.shellID) == [21] && table.isEmpty)
        #expect(table[0] == nil)
    }
}
