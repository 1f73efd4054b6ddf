import AirlockClient
import AirlockPosix
import Foundation
import Glibc
import Testing

/// The example plug-ins through a real airlockd and its workers, via AirlockClient and via
/// the airlockctl binary.
@Suite("End to end")
struct EndToEndTests {
    // MARK: - AirlockClient

    @Test("echo: a command's line comes back on stdout with exit code 0")
    func echoCommand() async throws {
        try await Daemon.with { daemon in
            let connection = try await daemon.connect()
            defer { connection.close() }
            #expect(connection.server.protocolVersion == 1)
            #expect(connection.server.maxFrameSize >= 4096)
            #expect(!connection.server.serverVersion.isEmpty)
            #expect(connection.server.peerUserID == getuid())

            let shell = try await connection.createShell(ShellRequest(plugin: "echo"))
            #expect(shell.plugin == "echo")
            #expect(!shell.resourceURI.isEmpty)
            let command = try await shell.run("hello", arguments: ["world"])
            let output = try await command.collectOutput()
            #expect(output.stdoutText == "hello world\n")
            #expect(output.exitCode == 0)
            try await shell.close()
        }
    }

    @Test("echo: cat returns its input, including input split over several frames")
    func echoCat() async throws {
        try await Daemon.with { daemon in
            let connection = try await daemon.connect()
            defer { connection.close() }
            let shell = try await connection.createShell(plugin: "echo")
            let command = try await shell.run("cat")
            async let output = command.collectOutput()
            let input = randomBytes(connection.server.maxFrameSize * 2 + 1234)
            try await command.send(Array(input[0..<100]))
            try await command.send(Array(input[100...]), endOfStream: true)
            let collected = try await output
            let collectedMatches = collected.stdout == input  // not inside #expect: its diff of large arrays takes minutes
            #expect(collectedMatches, "got \(collected.stdout.count) bytes back of \(input.count)")
            try await shell.close()
        }
    }

    @Test("shell: uname -a")
    func shellUname() async throws {
        try await Daemon.with { daemon in
            let connection = try await daemon.connect()
            defer { connection.close() }
            let shell = try await connection.createShell(plugin: "shell")
            let output = try await shell.run("uname", arguments: ["-a"]).collectOutput()
            #expect(output.stdoutText.hasPrefix("Linux "))
            #expect(output.exitCode == 0)
            try await shell.close()
        }
    }

    @Test("shell: stdin reaches cat byte for byte; stdout and stderr stay apart; exit codes come through")
    func shellStreams() async throws {
        try await Daemon.with { daemon in
            let connection = try await daemon.connect()
            defer { connection.close() }
            let shell = try await connection.createShell(plugin: "shell")

            let cat = try await shell.run("cat")
            async let echoed = cat.collectOutput()
            let input = randomBytes(300_000)
            for start in stride(from: 0, to: input.count, by: 65_536) {
                try await cat.send(Array(input[start..<min(start + 65_536, input.count)]))
            }
            try await cat.send([], endOfStream: true)
            let catOutput = try await echoed
            let catOutputMatches = catOutput.stdout == input  // not inside #expect: its diff of large arrays takes minutes
            #expect(catOutputMatches, "got \(catOutput.stdout.count) bytes back of \(input.count)")
            #expect(catOutput.stderr.isEmpty)
            #expect(catOutput.exitCode == 0)

            let mixed = try await shell.run("echo out; echo err >&2; exit 3").collectOutput()
            #expect(mixed.stdoutText == "out\n")
            #expect(mixed.stderrText == "err\n")
            #expect(mixed.exitCode == 3)
            try await shell.close()
        }
    }

    @Test("shell: ctrl_c ends sleep 30 (exit code 128 + SIGINT)")
    func shellControlC() async throws {
        try await Daemon.with { daemon in
            let connection = try await daemon.connect()
            defer { connection.close() }
            let shell = try await connection.createShell(plugin: "shell")
            let command = try await shell.run("echo ready; sleep 30")
            var exitCode: UInt32?
            var signalled = false
            for try await chunk in command.outputUntilDone() {
                if !signalled, String(decoding: chunk.bytes, as: UTF8.self).contains("ready") {
                    try await command.signal(.ctrlC)
                    signalled = true
                }
                if let code = chunk.exitCode { exitCode = code }
            }
            #expect(signalled)
            #expect(exitCode == 128 + UInt32(SIGINT))
            try await shell.close()
        }
    }

    @Test("cancelling the task that awaits output cancels the Receive")
    func cancelReceive() async throws {
        try await Daemon.with { daemon in
            let connection = try await daemon.connect()
            defer { connection.close() }
            let shell = try await connection.createShell(plugin: "shell")
            let command = try await shell.run("echo ready; sleep 30")
            let (started, startedContinuation) = AsyncStream.makeStream(of: Void.self)
            let receiving = Task {
                for try await chunk in command.output() where String(decoding: chunk.bytes, as: UTF8.self).contains("ready") {
                    startedContinuation.yield()
                }
            }
            for await _ in started { break }
            receiving.cancel()
            let result = await receiving.result
            if case .failure(let error) = result {
                let airlockError = try #require(error as? AirlockError)
                #expect(airlockError.code == WSManError.operationAborted)
            }
            // The connection is still usable.
            #expect(try await connection.ping() > .zero)
            try await shell.close()
        }
    }

    @Test("a Receive past its deadline fails with ERROR_WSMAN_OPERATION_TIMEDOUT")
    func receiveTimeout() async throws {
        try await Daemon.with { daemon in
            let connection = try await daemon.connect()
            defer { connection.close() }
            let shell = try await connection.createShell(plugin: "shell")
            let command = try await shell.run("sleep 30")
            let error = await #expect(throws: AirlockError.self) {
                for try await _ in command.output(timeout: .milliseconds(300)) {}
            }
            #expect(error?.code == WSManError.operationTimedOut)
            try await shell.close()
        }
    }

    /// Three clients with two shells each (one per example plug-in, within the default
    /// MaxShellsPerUser quota of 5 per plug-in), three commands per shell, all at once.
    @Test("concurrent operations on several shells from several clients")
    func concurrency() async throws {
        try await Daemon.with { daemon in
            try await withThrowingTaskGroup(of: Void.self) { clients in
                for client in 0..<3 {
                    clients.addTask {
                        let connection = try await daemon.connect(clientName: "client-\(client)")
                        defer { connection.close() }
                        try await withThrowingTaskGroup(of: Void.self) { shells in
                            for index in 0..<2 {
                                shells.addTask {
                                    let plugin = index % 2 == 0 ? "shell" : "echo"
                                    let shell = try await connection.createShell(plugin: plugin)
                                    let tag = "c\(client)-s\(index)"
                                    async let first = shell.run("echo", arguments: [tag, "one"]).collectOutput()
                                    async let second = shell.run("echo", arguments: [tag, "two"]).collectOutput()
                                    let cat = try await shell.run("cat")
                                    async let third = cat.collectOutput()
                                    try await cat.send(Array("\(tag) three".utf8), endOfStream: true)
                                    let (one, two, three) = try await (first, second, third)
                                    let expectedPrefix = plugin == "echo" ? "echo " : ""
                                    #expect(one.stdoutText == "\(expectedPrefix)\(tag) one\n")
                                    #expect(two.stdoutText == "\(expectedPrefix)\(tag) two\n")
                                    #expect(three.stdoutText == "\(tag) three")
                                    #expect(try await connection.ping() > .zero)
                                    try await shell.close()
                                }
                            }
                            try await shells.waitForAll()
                        }
                    }
                }
                try await clients.waitForAll()
            }
        }
    }

    @Test("Connect after Disconnect, from another connection")
    func connectAfterDisconnect() async throws {
        try await Daemon.with { daemon in
            let first = try await daemon.connect(clientName: "first")
            let shell = try await first.createShell(plugin: "echo")
            let shellID = shell.id
            try await shell.disconnect(idleTimeout: .seconds(60))
            first.close()

            let second = try await daemon.connect(clientName: "second")
            defer { second.close() }
            let (reattached, response) = try await second.connectShell(id: shellID, plugin: "echo")
            #expect(reattached.id == shellID)
            #expect(response == "<EchoConnectResponse/>")
            let output = try await reattached.run("again").collectOutput()
            #expect(output.stdoutText == "again\n")
            try await reattached.close()
        }
    }

    @Test("an unknown plug-in name is a clear error")
    func unknownPlugin() async throws {
        try await Daemon.with { daemon in
            let connection = try await daemon.connect()
            defer { connection.close() }
            let error = await #expect(throws: AirlockError.self) {
                _ = try await connection.createShell(plugin: "no-such-plugin")
            }
            #expect(error?.code == WSManError.invalidResourceURI)
            #expect(error?.kind == .operationFailed)
            #expect(error?.message.contains("no-such-plugin") == true)
        }
    }

    @Test("status: the JSON has workers with plugin, pid, state and restarts")
    func status() async throws {
        try await Daemon.with { daemon in
            let connection = try await daemon.connect()
            defer { connection.close() }
            let shell = try await connection.createShell(plugin: "shell")
            _ = try await shell.run("true").collectOutput()

            let json = try await connection.status()
            let object = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
            let workers = try #require(object["workers"] as? [[String: Any]])
            #expect(Set(workers.compactMap { $0["plugin"] as? String }) == ["echo", "shell"])
            for worker in workers {
                #expect(worker.keys.contains("pid"))  // null while no worker process runs
                #expect(worker["state"] is String)
                #expect(worker["restarts"] is Int)
            }
            let shellEntry = try #require(workers.first { $0["plugin"] as? String == "shell" })
            #expect(shellEntry["pid"] is Int)

            let report = try await connection.statusReport()
            let shellWorker = try #require(report.workers.first { $0.plugin == "shell" })
            #expect(shellWorker.state == "running")
            #expect((shellWorker.pid ?? 0) > 0)
            #expect(report.supervisor?.socket == daemon.socketPath)

            let one = try await connection.statusReport(plugin: "shell")
            #expect(one.workers.map(\.plugin) == ["shell"])

            let plugins = try await connection.listPlugins()
            #expect(Set(plugins.map(\.name)) == ["echo", "shell"])
            try await shell.close()
        }
    }

    @Test("the blocking API works from a plain thread")
    func blockingAPI() async throws {
        try await Daemon.with { daemon in
            let connection = try await daemon.connect()
            defer { connection.close() }
            let shell = try await connection.createShell(plugin: "echo")
            let command = try await shell.run("cat")
            async let output = command.collectOutput()
            let failure = await withCheckedContinuation { (continuation: CheckedContinuation<AirlockError?, Never>) in
                Thread.detachNewThread {
                    do throws(AirlockError) {
                        try connection.pingBlocking()
                        try command.sendBlocking(Array("from a thread".utf8), endOfStream: true)
                        continuation.resume(returning: nil)
                    } catch {
                        continuation.resume(returning: error)
                    }
                }
            }
            #expect(failure == nil)
            #expect(try await output.stdoutText == "from a thread")
            try await shell.close()
        }
    }

    @Test("blocking calls in a row read their own answers; async calls, output and close still work after them")
    func blockingCallsInARow() async throws {
        try await Daemon.with { daemon in
            let connection = try await daemon.connect()
            let shell = try await connection.createShell(plugin: "echo")
            let command = try await shell.run("cat")
            // Back to back, the reader thread parks and each caller reads its own answer.
            let first = await onPlainThread { () throws(AirlockError) in
                for _ in 0..<300 { try connection.pingBlocking() }
            }
            #expect(first == nil)
            // Async calls right after: the parked reader must take the socket back.
            for _ in 0..<20 { _ = try await connection.ping() }
            // Blocking calls while output is being received, then async and blocking mixed.
            async let output = command.collectOutput()
            let second = await onPlainThread { () throws(AirlockError) in
                for index in 0..<50 {
                    try connection.pingBlocking()
                    if index % 10 == 0 { try command.sendBlocking(Array("\(index)\n".utf8)) }
                }
                try command.sendBlocking([], endOfStream: true)
            }
            #expect(second == nil)
            #expect(try await output.stdoutText == "0\n10\n20\n30\n40\n")
            let third = await onPlainThread { () throws(AirlockError) in
                for _ in 0..<50 { try connection.pingBlocking() }
            }
            #expect(third == nil)
            _ = try await connection.ping()
            try await shell.close()
            // Closing while the reader is parked ends the connection at once.
            let fourth = await onPlainThread { () throws(AirlockError) in
                for _ in 0..<10 { try connection.pingBlocking() }
            }
            #expect(fourth == nil)
            connection.close()
            await #expect(throws: AirlockError.self) { _ = try await connection.ping() }
            let afterClose = await onPlainThread { () throws(AirlockError) in try connection.pingBlocking() }
            #expect(afterClose != nil)
        }
    }


    @Test("when airlockd dies, pending operations fail with a clear error")
    func connectionLoss() async throws {
        let daemon = try await Daemon.start()
        let connection: AirlockConnection
        let receiving: Task<CollectedOutput, any Error>
        do {
            connection = try await daemon.connect()
            let shell = try await connection.createShell(plugin: "shell")
            let command = try await shell.run("sleep 30")
            receiving = Task { try await command.collectOutput() }
        } catch {
            await daemon.stop()
            throw error
        }
        defer { connection.close() }
        // SIGKILL: no orderly shutdown that could complete the Receive first.
        _ = try? ProcessControl.kill(daemon.pid, signal: SIGKILL)
        await daemon.stop()
        let error = await #expect(throws: AirlockError.self) { try await receiving.value }
        #expect(error?.kind == .connectionLost, "\(String(describing: error))")
        #expect(error?.message.hasPrefix("the connection to airlockd at \(daemon.socketPath) was lost") == true)
        // Once the connection is gone, new requests fail at once.
        let later = await #expect(throws: AirlockError.self) { _ = try await connection.createShell(plugin: "shell") }
        #expect(later?.kind == .connectionLost)
    }

    @Test("when airlockd dies, a blocking call that reads its own answer fails instead of hanging")
    func connectionLossDuringBlockingCalls() async throws {
        let daemon = try await Daemon.start()
        let connection: AirlockConnection
        do {
            connection = try await daemon.connect()
        } catch {
            await daemon.stop()
            throw error
        }
        defer { connection.close() }
        // Blocking calls back to back: the reader thread parks, the callers read.
        let before = await onPlainThread { () throws(AirlockError) in
            for _ in 0..<50 { try connection.pingBlocking() }
        }
        #expect(before == nil)
        _ = try? ProcessControl.kill(daemon.pid, signal: SIGKILL)
        await daemon.stop()
        let failure = await onPlainThread { () throws(AirlockError) in
            for _ in 0..<3 { try connection.pingBlocking() }
        }
        #expect(failure?.kind == .connectionLost, "\(String(describing: failure))")
        // The reader thread ended the connection: async calls fail at once too.
        let later = await #expect(throws: AirlockError.self) { _ = try await connection.ping() }
        #expect(later?.kind == .connectionLost)
    }

    @Test("connecting to a socket nobody listens on is a clear error")
    func unreachable() async throws {
        let path = "/tmp/airlock-test-nonexistent-\(getpid())/s.sock"
        let error = await #expect(throws: AirlockError.self) {
            _ = try await AirlockConnection.connect(socketPath: path)
        }
        #expect(error?.kind == .unreachable)
        #expect(error?.message == "cannot connect to airlockd at \(path): No such file or directory")
    }

    // MARK: - airlockctl

    @Test("airlockctl run: uname -a, stdout and exit code")
    func cliUname() async throws {
        try await Daemon.with { daemon in
            let outcome = try await daemon.airlockctl(["run", "--plugin", "shell", "--", "uname", "-a"])
            #expect(outcome.exitCode == 0, "stderr: \(outcome.stderrText)")
            #expect(outcome.stdoutText.hasPrefix("Linux "))
        }
    }

    @Test("airlockctl run: stdin is forwarded, stderr and the exit code come through")
    func cliStreams() async throws {
        try await Daemon.with { daemon in
            let input = randomBytes(700_000)
            let cat = try await daemon.airlockctl(["run", "--plugin", "shell", "--", "cat"], input: .bytes(input))
            #expect(cat.exitCode == 0, "stderr: \(cat.stderrText)")
            let catMatches = cat.stdout == input  // not inside #expect: its diff of large arrays takes minutes
            #expect(catMatches, "got \(cat.stdout.count) bytes back of \(input.count)")

            let mixed = try await daemon.airlockctl(["run", "--plugin", "shell", "--", "echo out; echo err >&2; exit 3"])
            #expect(mixed.exitCode == 3)
            #expect(mixed.stdoutText == "out\n")
            #expect(mixed.stderrText == "err\n")

            // --socket also works after the subcommand.
            let after = try await ChildProcess.start(
                Daemon.executablePath("airlockctl"), ["run", "--socket", daemon.socketPath, "--plugin", "echo", "--", "hi"]
            ).finish()
            #expect(after.exitCode == 0, "stderr: \(after.stderrText)")
            #expect(after.stdoutText == "hi\n")
        }
    }

    @Test("airlockctl run: SIGINT sends ctrl_c to the command")
    func cliInterrupt() async throws {
        try await Daemon.with { daemon in
            let child = try daemon.startAirlockctl(["run", "--plugin", "shell", "--", "echo ready; sleep 30"])
            try await child.waitForOutput(containing: "ready")
            child.signal(SIGINT)
            let outcome = await child.finish()
            #expect(outcome.exitCode == 128 + SIGINT, "stderr: \(outcome.stderrText)")
        }
    }

    @Test("airlockctl run: failures name the plug-in and the WSMan error")
    func cliFailures() async throws {
        try await Daemon.with { daemon in
            let unknown = try await daemon.airlockctl(["run", "--plugin", "no-such-plugin", "--", "true"])
            #expect(unknown.exitCode == 125)
            #expect(unknown.stderrText.hasPrefix("airlockctl: plug-in 'no-such-plugin': ERROR_WSMAN_INVALID_RESOURCE_URI (0x8033803B): "))

            let late = try await daemon.airlockctl(["run", "--plugin", "shell", "--timeout", "0.5", "--", "sleep 30"])
            #expect(late.exitCode == 125)
            #expect(late.stderrText.contains("ERROR_WSMAN_OPERATION_TIMEDOUT"))
        }
        let path = "/tmp/airlock-test-nonexistent-\(getpid())/s.sock"
        let outcome = try await ChildProcess.start(Daemon.executablePath("airlockctl"), ["--socket", path, "status"]).finish()
        #expect(outcome.exitCode == 69)
        #expect(outcome.stderrText == "airlockctl: cannot connect to airlockd at \(path): No such file or directory (is airlockd running? start it with 'airlockd' or set --socket)\n")
    }

    @Test("airlockctl status, status --json, plugins")
    func cliStatus() async throws {
        try await Daemon.with { daemon in
            _ = try await daemon.airlockctl(["run", "--plugin", "echo", "--", "warm", "up"])

            let json = try await daemon.airlockctl(["status", "--json"])
            #expect(json.exitCode == 0, "stderr: \(json.stderrText)")
            let object = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout)) as? [String: Any])
            let workers = try #require(object["workers"] as? [[String: Any]])
            #expect(workers.contains { $0["plugin"] as? String == "echo" && $0["state"] as? String == "running" })

            let human = try await daemon.airlockctl(["status"])
            #expect(human.exitCode == 0)
            #expect(human.stdoutText.contains("airlockd"))
            #expect(human.stdoutText.contains("Socket: \(daemon.socketPath)"))
            #expect(human.stdoutText.contains("echo — running"))

            let one = try await daemon.airlockctl(["status", "echo"])
            #expect(one.exitCode == 0)
            #expect(one.stdoutText.hasPrefix("● echo — running"))

            let plugins = try await daemon.airlockctl(["plugins"])
            #expect(plugins.exitCode == 0)
            let lines = plugins.stdoutText.split(separator: "\n")
            #expect(lines.first?.hasPrefix("NAME") == true)
            #expect(lines.contains { $0.hasPrefix("echo ") })
            #expect(lines.contains { $0.hasPrefix("shell ") })
        }
    }
}

/// `count` pseudo-random bytes (SplitMix64; every byte value appears), fast enough in
/// debug builds.
func randomBytes(_ count: Int) -> [UInt8] {
    var state = UInt64.random(in: 0...UInt64.max)
    return [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
        var index = 0
        while index < count {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
            for shift in stride(from: 0, to: 64, by: 8) where index < count {
                buffer[index] = UInt8(truncatingIfNeeded: z >> UInt64(shift))
                index += 1
            }
        }
        initialized = count
    }
}
