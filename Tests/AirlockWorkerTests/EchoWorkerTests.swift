import AirlockPosix
import AirlockProtocol
import Glibc
import Testing

/// The worker hosting the echo plug-in, driven over its channel exactly as airlockd does.
@Suite struct EchoWorkerTests {
    static let echo = BuildProducts.plugin("airlock-plugin-echo")
    static let allExports: UInt32 = 0x3FF
    /// Every sandbox layer but the network namespace (its teardown is slow and it adds
    /// nothing here): user, mount, PID, IPC, UTS, Landlock, seccomp, rlimits, no_new_privs.
    static let sandboxLayers: UInt32 = 0x3FF & ~(1 << 3)

    /// Starts a worker with the echo plug-in and one shell (operation 1, shell 1).
    static func startWithShell(layers: UInt32 = 0) throws -> WorkerHarness {
        let worker = try WorkerHarness()
        let ready = try worker.start(library: echo, layers: layers)
        #expect(ready.errorCode == 0, "\(ready.message)")
        #expect(ready.exports == allExports)
        try worker.shell(1, shellID: 1)
        try worker.expectContext(1)
        return worker
    }

    @Test func commandReceiveAndShutdown() throws {
        let worker = try EchoWorkerTests.startWithShell()
        try worker.command(2, shellID: 1, commandID: 10, "hello", ["world"])
        try worker.expectContext(2)
        try worker.receive(3, shellID: 1, commandID: 10)
        let received = try worker.receiveOutput(3)
        #expect(String(decoding: received.output, as: UTF8.self) == "hello world\n")
        #expect(received.done)
        #expect(received.exitCode == 0)
        #expect(received.complete.errorCode == 0)
        // The command ended with its Done result.
        #expect(try worker.completion(of: 2).errorCode == 0)

        try worker.send(.workerShutdown(WorkerShutdown(reason: 2, graceMs: 5_000)), operation: 0)
        // The shell is cancelled and completes, then Shutdown runs.
        #expect(try worker.completion(of: 1).errorCode == 0)
        let done = try worker.next(for: 0)
        guard case .workerShutdownDone(let result) = done.message else {
            Issue.record("expected W_SHUTDOWN_DONE, got \(done.message)")
            return
        }
        #expect(result.errorCode == 0)
        #expect(result.threadsLeft == 0)
        #expect(try worker.waitForExit() == .exited(0))
        #expect(worker.breaches.isEmpty, "\(worker.breaches)")
    }

    @Test func sandboxedWorkerServesAndShutsDown() throws {
        let worker = try WorkerHarness()
        let ready = try worker.start(library: EchoWorkerTests.echo, layers: EchoWorkerTests.sandboxLayers)
        #expect(ready.errorCode == 0, "\(ready.message)")
        let states = Dictionary(uniqueKeysWithValues: ready.sandbox.map { ($0.name, $0.state) })
        #expect(states["seccomp"] == "active", "\(ready.sandbox)")
        #expect(states["pid"] == "active", "\(ready.sandbox)")
        try worker.shell(1, shellID: 1)
        try worker.expectContext(1)
        try worker.command(2, shellID: 1, commandID: 10, "hello", ["sandbox"])
        try worker.expectContext(2)
        try worker.receive(3, shellID: 1, commandID: 10)
        #expect(String(decoding: try worker.receiveOutput(3).output, as: UTF8.self) == "hello sandbox\n")
        #expect(try worker.completion(of: 2).errorCode == 0)
        try worker.send(.workerShutdown(WorkerShutdown(reason: 2, graceMs: 5_000)), operation: 0)
        #expect(try worker.completion(of: 1).errorCode == 0)
        let done = try worker.next(for: 0)
        #expect(done.message == .workerShutdownDone(WorkerShutdownDone(errorCode: 0, threadsLeft: 0)))
        #expect(try worker.waitForExit() == .exited(0))
    }

    @Test func exitCodeSignalAndConnect() throws {
        let worker = try EchoWorkerTests.startWithShell()
        try worker.command(2, shellID: 1, commandID: 10, "exit", ["3"])
        try worker.expectContext(2)
        try worker.receive(3, shellID: 1, commandID: 10)
        let received = try worker.receiveOutput(3)
        #expect(received.done && received.exitCode == 3)
        #expect(try worker.completion(of: 2).errorCode == 0)

        // Signal terminate on a running `cat` ends it.
        try worker.command(4, shellID: 1, commandID: 11, "cat")
        try worker.expectContext(4)
        try worker.send(.workerSignal(WorkerSignal(
            context: WorkerHarness.context(), shellID: 1, commandID: 11,
            code: "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/signal/terminate")), operation: 5)
        #expect(try worker.completion(of: 5).errorCode == 0)
        try worker.receive(6, shellID: 1, commandID: 11)
        #expect(try worker.receiveOutput(6).done)
        #expect(try worker.completion(of: 4).errorCode == 0)

        // Connect passes the plug-in's response through in extendedInformation.
        try worker.send(.workerConnect(WorkerConnect(
            context: WorkerHarness.context(), shellID: 1, commandID: 0, inboundConnectInformation: .text("<Connect/>"))), operation: 7)
        let connect = try worker.completion(of: 7)
        #expect(connect.errorCode == 0)
        #expect(connect.extendedInformation == "<EchoConnectResponse/>")
        #expect(worker.breaches.isEmpty, "\(worker.breaches)")
    }

    @Test func sendToCat() throws {
        let worker = try EchoWorkerTests.startWithShell()
        try worker.command(2, shellID: 1, commandID: 10, "cat")
        try worker.expectContext(2)
        try worker.input(3, shellID: 1, commandID: 10, Array("first ".utf8), end: false)
        #expect(try worker.completion(of: 3).errorCode == 0)
        try worker.input(4, shellID: 1, commandID: 10, Array("second".utf8), end: true)
        #expect(try worker.completion(of: 4).errorCode == 0)
        try worker.receive(5, shellID: 1, commandID: 10)
        let received = try worker.receiveOutput(5)
        #expect(String(decoding: received.output, as: UTF8.self) == "first second")
        #expect(received.done)
        #expect(try worker.completion(of: 2).errorCode == 0)
    }

    @Test func operationParametersAndConfiguration() throws {
        let worker = try EchoWorkerTests.startWithShell()
        try worker.command(2, shellID: 1, commandID: 10, "params", timeoutMs: 1234)
        try worker.expectContext(2)
        try worker.receive(3, shellID: 1, commandID: 10)
        let parameters = String(decoding: try worker.receiveOutput(3).output, as: UTF8.self)
        #expect(parameters == "timeout=1234 envelope=512000 locale=en-US datalocale=de-DE\n")

        try worker.command(4, shellID: 1, commandID: 11, "config")
        try worker.expectContext(4)
        try worker.receive(5, shellID: 1, commandID: 11)
        let configuration = String(decoding: try worker.receiveOutput(5).output, as: UTF8.self)
        #expect(configuration == "name=echo autorestart=1 sharedhost=0 runasuser=nobody idletimeout=300\n")

        try worker.command(6, shellID: 1, commandID: 12, "whoami")
        try worker.expectContext(6)
        try worker.receive(7, shellID: 1, commandID: 12)
        let sender = String(decoding: try worker.receiveOutput(7).output, as: UTF8.self)
        #expect(sender == "senderName=alice authenticationMechanism=Negotiate resourceUri=http://schemas.example/echo\n")

        try worker.command(8, shellID: 1, commandID: 13, "report-completion")
        try worker.expectContext(8)
        let report = try worker.next(for: 0)
        #expect(report.message == .workerReportCompletion(flags: 0))
        try worker.receive(9, shellID: 1, commandID: 13)
        #expect(String(decoding: try worker.receiveOutput(9).output, as: UTF8.self) == "report-completion=0\n")

        try worker.command(10, shellID: 1, commandID: 14, "free-details")
        try worker.expectContext(10)
        try worker.receive(11, shellID: 1, commandID: 14)
        #expect(String(decoding: try worker.receiveOutput(11).output, as: UTF8.self) == "free-details=0\n")
        #expect(worker.breaches.isEmpty, "\(worker.breaches)")
    }

    @Test func shellStartupInformation() throws {
        let worker = try WorkerHarness()
        #expect(try worker.start(library: EchoWorkerTests.echo).errorCode == 0)
        try worker.shell(1, shellID: 7, environment: [EnvironmentVariable(name: "GREETING", value: "grüß dich")], workingDirectory: "/srv/ä")
        try worker.expectContext(1)
        try worker.command(2, shellID: 7, commandID: 1, "env")
        try worker.expectContext(2)
        try worker.receive(3, shellID: 7, commandID: 1)
        #expect(String(decoding: try worker.receiveOutput(3).output, as: UTF8.self) == "GREETING=grüß dich\n")
        try worker.command(4, shellID: 7, commandID: 2, "pwd")
        try worker.expectContext(4)
        try worker.receive(5, shellID: 7, commandID: 2)
        #expect(String(decoding: try worker.receiveOutput(5).output, as: UTF8.self) == "/srv/ä\n")
    }

    /// Requests packed with the smallest fields (empty strings, options, variables and
    /// stream names; the longest ids) are laid out and served: a small packet's block is
    /// allocated from a bound on its size, and debug builds check that bound on each one.
    @Test func requestsOfManyTinyFieldsAreLaidOut() throws {
        let worker = try WorkerHarness()
        #expect(try worker.start(library: EchoWorkerTests.echo).errorCode == 0)
        let empty = RequestContext(senderName: "", authenticationMechanism: "", resourceURI: "", locale: "", dataLocale: "", timeoutMs: 0)
        let options = Array(repeating: WSManOption(name: "", value: ""), count: 60)
        try worker.send(.workerShell(WorkerShell(
            context: empty, shellID: .max, idleTimeoutMs: 0, inputStreams: Array(repeating: "", count: 60),
            outputStreams: Array(repeating: "", count: 60), workingDirectory: "",
            environment: Array(repeating: EnvironmentVariable(name: "", value: ""), count: 60), name: "", options: options,
            optionsMustUnderstand: true, inboundShellInformation: .text(""))), operation: 1)
        try worker.expectContext(1)
        try worker.send(.workerCommand(WorkerCommand(
            context: empty, shellID: .max, commandID: .max, commandLine: "", arguments: Array(repeating: "", count: 200),
            options: options)), operation: 2)
        try worker.expectContext(2)
        try worker.send(.workerReceive(WorkerReceive(
            context: empty, shellID: .max, commandID: .max, streams: Array(repeating: "", count: 300))), operation: 3)
        // The command line and its 200 empty arguments, joined with single spaces.
        #expect(try worker.receiveOutput(3).output == Array(repeating: UInt8(ascii: " "), count: 200) + [UInt8(ascii: "\n")])
        #expect(worker.breaches.isEmpty, "\(worker.breaches)")
    }

    @Test func cancelPendingReceiveThenCloseShell() throws {
        let worker = try EchoWorkerTests.startWithShell()
        try worker.command(2, shellID: 1, commandID: 10, "cat")
        try worker.expectContext(2)
        try worker.receive(3, shellID: 1, commandID: 10)
        // Nothing to deliver: the Receive waits, until cancelled.
        try worker.send(.ping(token: 42), operation: 99)
        let pong = try worker.next(for: 99)
        #expect(pong.message == .pong(token: 42))
        #expect(pong.flags == .final)
        try worker.send(.workerCancel, operation: 3)
        #expect(try worker.completion(of: 3).errorCode == WSManError.operationAborted)

        // Cancelling the shell ends its command and then the shell itself.
        try worker.send(.workerCancel, operation: 1)
        #expect(try worker.completion(of: 2).errorCode == WSManError.operationAborted)
        #expect(try worker.completion(of: 1).errorCode == 0)
        // The shell is gone: a request naming it is refused by the worker itself.
        try worker.command(4, shellID: 1, commandID: 11, "hello")
        let refused = try worker.completion(of: 4)
        #expect(refused.errorCode == WSManError.invalidSelectors)
        #expect(refused.extendedInformation?.contains("shell 1") == true)
    }

    @Test func unknownShellAndCommandAreRefused() throws {
        let worker = try EchoWorkerTests.startWithShell()
        try worker.receive(2, shellID: 1, commandID: 77)
        let unknownCommand = try worker.completion(of: 2)
        #expect(unknownCommand.errorCode == WSManError.invalidSelectors)
        #expect(unknownCommand.extendedInformation?.contains("command 77") == true)
        try worker.receive(3, shellID: 5, commandID: 0)
        #expect(try worker.completion(of: 3).errorCode == WSManError.invalidSelectors)
        #expect(worker.breaches.isEmpty)
    }

    @Test func manyOperationsLeaveNoDescriptorsBehind() throws {
        let worker = try EchoWorkerTests.startWithShell()
        func openDescriptors() -> Int {
            guard let directory = opendir("/proc/\(worker.pid)/fd") else { return -1 }
            defer { closedir(directory) }
            var count = 0
            while readdir(directory) != nil { count += 1 }
            return count
        }
        var operation: UInt64 = 2
        for commandID in UInt64(10)..<UInt64(310) {
            try worker.command(operation, shellID: 1, commandID: commandID, "n\(commandID)")
            try worker.expectContext(operation)
            try worker.receive(operation + 1, shellID: 1, commandID: commandID)
            #expect(String(decoding: try worker.receiveOutput(operation + 1).output, as: UTF8.self) == "n\(commandID)\n")
            #expect(try worker.completion(of: operation).errorCode == 0)
            operation += 2
        }
        // 600 operations, each with its own eventfd: only the quarantined ones stay open.
        let descriptors = openDescriptors()
        #expect(descriptors > 0 && descriptors < 100, "\(descriptors) descriptors open")
        #expect(worker.breaches.isEmpty, "\(worker.breaches)")
    }

    @Test func largeOutputIsSplitIntoFrames() throws {
        let worker = try WorkerHarness()
        #expect(try worker.start(library: EchoWorkerTests.echo, maxEnvelopeSize: 8192).errorCode == 0)
        try worker.shell(1, shellID: 1)
        try worker.expectContext(1)
        try worker.command(2, shellID: 1, commandID: 10, "cat")
        try worker.expectContext(2)
        let input = (0..<40_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        try worker.input(3, shellID: 1, commandID: 10, Array(input.prefix(4000)), end: false)
        #expect(try worker.completion(of: 3).errorCode == 0)
        try worker.input(4, shellID: 1, commandID: 10, Array(input.dropFirst(4000).prefix(4000)), end: true)
        #expect(try worker.completion(of: 4).errorCode == 0)
        try worker.receive(5, shellID: 1, commandID: 10)
        var results = 0
        var output: [UInt8] = []
        for frame in try worker.frames(until: 5) {
            if case .workerResult(let result) = frame.message, case .binary(let bytes) = result.streamResult {
                results += 1
                output += bytes
                #expect(frame.encoded().count <= 8192)
            }
        }
        #expect(output == Array(input.prefix(8000)))
        #expect(results >= 2)
    }
}

/// Startup failures reported in `W_READY`.
@Suite struct WorkerStartupTests {
    @Test func missingLibrary() throws {
        let worker = try WorkerHarness()
        let ready = try worker.start(plugin: "ghost", library: "/nonexistent/libghost.so")
        #expect(ready.errorCode == WSManError.fileNotPresent)
        #expect(ready.message.contains("/nonexistent/libghost.so"))
        #expect(try worker.waitForExit() == .exited(0))
    }

    @Test func notALibrary() throws {
        let worker = try WorkerHarness()
        let ready = try worker.start(plugin: "text", library: "/etc/hostname")
        #expect(ready.errorCode == WSManError.providerLoadFailed)
        #expect(ready.message.contains("plug-in text"))
        #expect(try worker.waitForExit() == .exited(0))
    }

    @Test func missingMandatoryExport() throws {
        let worker = try WorkerHarness()
        let library = BuildProducts.plugin("airlock-test-noexport")
        let ready = try worker.start(plugin: "noexport", library: library)
        #expect(ready.errorCode == WSManError.providerLoadFailed)
        #expect(ready.message.contains("WSManPlugin"), "\(ready.message)")
        #expect(ready.message.contains(library))
        #expect(try worker.waitForExit() == .exited(0))
    }

    @Test func malformedSandboxProfile() throws {
        let worker = try WorkerHarness()
        try worker.send(.workerStart(WorkerStart(
            plugin: "echo", libraryPath: EchoWorkerTests.echo, extraInfo: nil, startupFlags: 0, maxEnvelopeSize: 512_000,
            outputWindowBytes: 1 << 20, dropOutput: false, configuration: [], sandboxProfile: [1, 2, 3])))
        guard case .workerReady(let ready) = try worker.next().message else {
            Issue.record("expected W_READY")
            return
        }
        #expect(ready.errorCode == WSManError.pluginConfigurationCorrupted)
        #expect(ready.message.contains("sandbox profile of plug-in echo"))
        #expect(try worker.waitForExit() == .exited(0))
    }

    @Test func endOfFileEndsTheWorker() throws {
        let worker = try WorkerHarness()
        #expect(try worker.start(library: EchoWorkerTests.echo).errorCode == 0)
        try UnixSocket.shutdown(worker.channel, .both)
        #expect(try worker.waitForExit() == .exited(0))
    }

    @Test func protocolViolationIsFatal() throws {
        let worker = try WorkerHarness()
        #expect(try worker.start(library: EchoWorkerTests.echo).errorCode == 0)
        try worker.send(.hello(Hello(clientName: "confused")), operation: 0)
        let frame = try worker.next()
        guard case .workerFatal(let message) = frame.message else {
            Issue.record("expected W_FATAL, got \(frame.message)")
            return
        }
        #expect(message.contains("HELLO"))
        #expect(try worker.waitForExit() == .exited(70))
    }
}
