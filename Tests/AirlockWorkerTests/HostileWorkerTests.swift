import AirlockPosix
import AirlockProtocol
import Glibc
import Testing

/// The worker hosting the hostile test plug-in: flow control, contract breaches, hung
/// entry points, leaked threads.
@Suite struct HostileWorkerTests {
    static let hostile = BuildProducts.plugin("airlock-test-hostile")
    static let chunk = 64 * 1024

    /// A worker with the hostile plug-in and one shell (operation 1, shell 1).
    static func startWithShell(window: UInt32 = 1 << 20, dropOutput: Bool = false, extraInfo: String? = nil) throws -> WorkerHarness {
        let worker = try WorkerHarness()
        let ready = try worker.start(plugin: "hostile", library: hostile, window: window, dropOutput: dropOutput, extraInfo: extraInfo)
        #expect(ready.errorCode == 0, "\(ready.message)")
        try worker.shell(1, shellID: 1)
        try worker.expectContext(1)
        return worker
    }

    /// Reads `W_RESULT`s of `operation` until `bytes` of data have arrived.
    static func readResults(_ worker: WorkerHarness, _ operation: UInt64, bytes: Int) throws -> Int {
        var total = 0
        while total < bytes {
            let frame = try worker.next(for: operation)
            guard case .workerResult(let result) = frame.message, case .binary(let data) = result.streamResult else {
                throw HarnessError(description: "expected W_RESULT, got \(frame.message.type.wireName)")
            }
            total += data.count
        }
        return total
    }

    /// Output of a command of the hostile plug-in (a Receive delivers it and Done).
    static func output(_ worker: WorkerHarness, _ operation: UInt64, commandID: UInt64) throws -> String {
        try worker.receive(operation, shellID: 1, commandID: commandID)
        return String(decoding: try worker.receiveOutput(operation).output, as: UTF8.self)
    }

    @Test func floodStallsAtTheWindowUntilCredited() throws {
        let window = 4 * HostileWorkerTests.chunk
        let worker = try HostileWorkerTests.startWithShell(window: UInt32(window))
        try worker.command(2, shellID: 1, commandID: 10, "flood")
        try worker.expectContext(2)
        try worker.receive(3, shellID: 1, commandID: 10)
        #expect(try HostileWorkerTests.readResults(worker, 3, bytes: window) == window)
        // The window is full: a heartbeat goes through, and no further result came first.
        try worker.send(.ping(token: 1), operation: 99)
        #expect(try worker.next(for: 99).message == .pong(token: 1))
        #expect(worker.pendingFrames(for: 3).isEmpty)

        // A credit opens the window again for exactly that much.
        try worker.send(.workerCredit(bytes: UInt32(window)), operation: 3)
        #expect(try HostileWorkerTests.readResults(worker, 3, bytes: window) == window)
        try worker.send(.ping(token: 2), operation: 99)
        #expect(try worker.next(for: 99).message == .pong(token: 2))
        #expect(worker.pendingFrames(for: 3).isEmpty)

        // Cancelling the Receive makes the blocked ReceiveResult return ERROR_OPERATION_ABORTED.
        try worker.send(.workerCancel, operation: 3)
        #expect(try worker.completion(of: 3).errorCode == WSManError.operationAborted)
        // The worker still serves.
        try worker.command(4, shellID: 1, commandID: 11, "echo", ["still", "here"])
        try worker.expectContext(4)
        #expect(try HostileWorkerTests.output(worker, 5, commandID: 11) == "still here\n")
    }

    @Test func dropOutputDropsBeyondTheWindow() throws {
        let window = 2 * HostileWorkerTests.chunk
        let worker = try HostileWorkerTests.startWithShell(window: UInt32(window), dropOutput: true)
        try worker.command(2, shellID: 1, commandID: 10, "flood")
        try worker.expectContext(2)
        try worker.receive(3, shellID: 1, commandID: 10)
        #expect(try HostileWorkerTests.readResults(worker, 3, bytes: window) == window)
        try worker.send(.workerCancel, operation: 3)
        // Whatever the flood produced after the window filled was dropped, never sent.
        var extra = 0
        for frame in try worker.frames(until: 3) {
            if case .workerResult(let result) = frame.message, case .binary(let data) = result.streamResult {
                extra += data.count
            }
            if case .workerComplete(let complete) = frame.message {
                #expect(complete.errorCode == WSManError.operationAborted)
            }
        }
        #expect(extra == 0)
    }

    @Test func breachesAreReportedAndTheWorkerKeepsServing() throws {
        let worker = try HostileWorkerTests.startWithShell()

        // OperationComplete twice on the Command request.
        try worker.command(2, shellID: 1, commandID: 10, "double-complete")
        try worker.expectContext(2)
        #expect(try worker.completion(of: 2).errorCode == 0)
        let twice = try worker.waitForBreach(containing: "twice")
        #expect(twice.contains("plug-in hostile"))
        #expect(twice.contains("WSManPluginOperationComplete"))

        // Every callback with a NULL request pointer.
        try worker.command(3, shellID: 1, commandID: 11, "null-request")
        try worker.expectContext(3)
        #expect(try HostileWorkerTests.output(worker, 4, commandID: 11)
            == "ReportContext=87 ReceiveResult=87 OperationComplete=87 GetOperationParameters=87 FreeRequestDetails=87 RegisterShutdownCallback=returned\n")
        _ = try worker.waitForBreach(containing: "WSManPluginReportContext was called with a NULL request pointer")
        _ = try worker.waitForBreach(containing: "WSManPluginOperationComplete was called with a NULL request pointer")

        // ... and with a pointer the host never handed out.
        try worker.command(5, shellID: 1, commandID: 12, "bogus-request")
        try worker.expectContext(5)
        #expect(try HostileWorkerTests.output(worker, 6, commandID: 12)
            == "ReportContext=87 ReceiveResult=87 OperationComplete=87 GetOperationParameters=87 FreeRequestDetails=87 RegisterShutdownCallback=returned\n")
        _ = try worker.waitForBreach(containing: "unknown request pointer 0x1234")

        // ReportContext on a Receive request.
        try worker.command(7, shellID: 1, commandID: 13, "context-in-receive")
        try worker.expectContext(7)
        #expect(try HostileWorkerTests.output(worker, 8, commandID: 13) == "context-in-receive=87\n")
        _ = try worker.waitForBreach(containing: "only Shell and Command requests report a context")

        // ReceiveResult after OperationComplete.
        try worker.command(9, shellID: 1, commandID: 14, "result-after-complete")
        try worker.expectContext(9)
        try worker.receive(10, shellID: 1, commandID: 14)
        #expect(try worker.receiveOutput(10).complete.errorCode == 0)
        _ = try worker.waitForBreach(containing: "WSManPluginReceiveResult was called with the request of Receive operation 10 after WSManPluginOperationComplete")

        // A command context that another live command of the shell already has.
        try worker.command(11, shellID: 1, commandID: 15, "echo", ["alive"])
        try worker.expectContext(11)
        try worker.command(12, shellID: 1, commandID: 16, "duplicate-context")
        #expect(try worker.completion(of: 12).errorCode == WSManError.invalidParameter)
        _ = try worker.waitForBreach(containing: "another live command of the same shell")

        // The plug-in's own view of what it got back.
        try worker.command(13, shellID: 1, commandID: 17, "last-result")
        try worker.expectContext(13)
        #expect(try HostileWorkerTests.output(worker, 14, commandID: 17).contains("duplicate-context=87"))

        // Still serving, and each kind of breach was reported once.
        #expect(try HostileWorkerTests.output(worker, 15, commandID: 15) == "alive\n")
        #expect(Set(worker.breaches).count == worker.breaches.count)
    }

    @Test func hungEntryPointBlocksNeitherTheChannelNorOtherOperations() throws {
        let worker = try HostileWorkerTests.startWithShell()
        try worker.command(2, shellID: 1, commandID: 10, "hang-command")
        try worker.command(3, shellID: 1, commandID: 11, "hang-command")
        try worker.send(.ping(token: 7), operation: 99)
        #expect(try worker.next(for: 99).message == .pong(token: 7))
        try worker.command(4, shellID: 1, commandID: 12, "echo", ["served"])
        try worker.expectContext(4)
        #expect(try HostileWorkerTests.output(worker, 5, commandID: 12) == "served\n")
    }

    @Test(arguments: [0, EchoWorkerTests.sandboxLayers])
    func leakedThreadsAreCountedAtShutdown(layers: UInt32) throws {
        let worker = try WorkerHarness()
        let ready = try worker.start(plugin: "hostile", library: HostileWorkerTests.hostile, layers: layers, extraInfo: "leak-threads=3")
        #expect(ready.errorCode == 0, "\(ready.message)")
        try worker.shell(1, shellID: 1)
        try worker.expectContext(1)
        try worker.send(.workerShutdown(WorkerShutdown(reason: 4, graceMs: 5_000)), operation: 0)
        var done: WorkerShutdownDone?
        while done == nil {
            let frame = try worker.next()
            if case .workerShutdownDone(let result) = frame.message { done = result }
        }
        #expect(done?.errorCode == 0)
        #expect(done?.threadsLeft == 3)
        #expect(try worker.waitForExit() == .exited(0))
    }

    @Test func failingStartupIsReported() throws {
        let worker = try WorkerHarness()
        let ready = try worker.start(plugin: "hostile", library: HostileWorkerTests.hostile, extraInfo: "fail-startup")
        #expect(ready.errorCode == WSManError.pluginFailed)
        #expect(ready.message == "WSManPluginStartup of plug-in hostile returned ERROR_WSMAN_PLUGIN_FAILED (0x80338083)")
        #expect(try worker.waitForExit() == .exited(0))
    }

    @Test func crashingEntryPointKillsOnlyTheWorker() throws {
        let worker = try WorkerHarness()
        // The rlimits layer (bit 8) sets RLIMIT_CORE to 0: no core file from this test.
        #expect(try worker.start(plugin: "hostile", library: HostileWorkerTests.hostile, layers: 1 << 8).errorCode == 0)
        try worker.shell(1, shellID: 1)
        try worker.expectContext(1)
        try worker.command(2, shellID: 1, commandID: 10, "segv")
        guard case .signaled(let signal, _) = try worker.waitForExit() else {
            Issue.record("the worker did not die by a signal")
            return
        }
        #expect(signal == SIGSEGV)
    }
}
