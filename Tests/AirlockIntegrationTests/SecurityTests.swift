import AirlockClient
import AirlockPosix
import AirlockProtocol
import Foundation
import Glibc
import Synchronization
import Testing

/// Issue 5 end to end: the socket as an attack surface. A second local user (created by the
/// test) is refused what it may not use, shells belong to their owners, every quota answers
/// with its WSMan code, and malformed, oversized, garbage and stalled input never harms the
/// supervisor or its other clients.
@Suite("Socket security (issue 5)")
struct SecurityTests {
    // MARK: - The socket and peer identity

    @Test("the socket file gets the configured mode: 0660 by default, SocketMode otherwise")
    func socketMode() async throws {
        for (setting, expected) in [(nil, 0o660), ("0666", 0o666), ("0600", 0o600)] as [(String?, mode_t)] {
            let config = setting.map { #"{ "SocketMode": "\#($0)" }"# }
            try await Daemon.with(config: config) { daemon in
                var info = stat()
                #expect(stat(daemon.socketPath, &info) == 0)
                #expect(info.st_mode & S_IFMT == S_IFSOCK)
                #expect(info.st_mode & 0o7777 == expected, "SocketMode \(setting ?? "default"): mode \(String(info.st_mode & 0o7777, radix: 8))")
            }
        }
    }

    @Test("a user outside the socket's group cannot connect to the default 0660 socket", .enabled(if: testsRunAsRoot, "needs root: the test creates a second local user (useradd) and acts as it"))
    func socketPermission() async throws {
        try await TemporaryUser.with { user in
            try await Daemon.with { daemon in
                let outcome = try await user.airlockctl(daemon, ["status"])
                #expect(outcome.exitCode == 69, "stdout: \(outcome.stdoutText) stderr: \(outcome.stderrText)")
                #expect(outcome.stderrText.contains("Permission denied"), "\(outcome.stderrText)")
            }
        }
    }

    @Test("a plug-in the user may not use is refused with ERROR_ACCESS_DENIED; the plug-in sees who calls", .enabled(if: testsRunAsRoot, "needs root: the test creates a second local user (useradd) and acts as it"))
    func accessControl() async throws {
        try await TemporaryUser.with { user in
            let echo = Daemon.pluginPath("echo")
            let group = try #require(UserDatabase.groupName(gid: user.gid))
            let config = """
                {
                  "SocketMode": "0666",
                  "Plugins": [
                    { "Name": "restricted", "Filename": "\(echo)", "AllowedUsers": ["root"] },
                    { "Name": "open", "Filename": "\(echo)" },
                    { "Name": "by-group", "Filename": "\(echo)", "AllowedUsers": [], "AllowedGroups": ["\(group)"] },
                  ],
                }
                """
            try await Daemon.with(plugins: [:], config: config) { daemon in
                let refused = try await user.airlockctl(daemon, ["run", "--plugin", "restricted", "--", "whoami"])
                #expect(refused.exitCode == 125, "stdout: \(refused.stdoutText) stderr: \(refused.stderrText)")
                #expect(refused.stderrText.hasPrefix("airlockctl: plug-in 'restricted': ERROR_ACCESS_DENIED (5): "), "\(refused.stderrText)")
                #expect(refused.stderrText.contains("user \(user.name) (uid \(user.uid)) may not use plug-in 'restricted'"), "\(refused.stderrText)")
                #expect(refused.stdout.isEmpty)

                let allowed = try await user.airlockctl(daemon, ["run", "--plugin", "open", "--", "whoami"])
                #expect(allowed.exitCode == 0, "stderr: \(allowed.stderrText)")
                #expect(allowed.stdoutText.hasPrefix("senderName=\(user.name) authenticationMechanism=UnixPeerCredentials "), "\(allowed.stdoutText)")

                let byGroup = try await user.airlockctl(daemon, ["run", "--plugin", "by-group", "--", "whoami"])
                #expect(byGroup.exitCode == 0, "AllowedGroups [\(group)]: stderr: \(byGroup.stderrText)")

                let root = try await daemon.airlockctl(["run", "--plugin", "restricted", "--", "whoami"])
                #expect(root.exitCode == 0, "stderr: \(root.stderrText)")
                #expect(root.stdoutText.hasPrefix("senderName=root authenticationMechanism=UnixPeerCredentials "), "\(root.stdoutText)")
            }
        }
    }

    @Test("another user's shell cannot be used, closed or seen; an administrator lists and closes any shell", .enabled(if: testsRunAsRoot, "needs root: the test creates a second local user (useradd) and acts as it"))
    func shellOwnership() async throws {
        try await TemporaryUser.with { user in
            try await Daemon.with(config: #"{ "SocketMode": "0666" }"#) { daemon in
                let connection = try await daemon.connect()
                defer { connection.close() }
                let rootShell = try await connection.createShell(plugin: "echo")
                let cat = try await rootShell.run("cat")

                // The ids are no secret: root's status shows them.
                let rootView = try await Self.shellList(try await daemon.airlockctl(["shells", "--json"]))
                #expect(rootView.map(\.id) == [rootShell.id])
                #expect(rootView.first?.owner == "root")
                #expect(rootView.first?.commands == [cat.id])

                // The other user, by id, gets nothing from root's shell.
                let intruder = try await user.rawConnection(daemon)
                defer { intruder.close() }
                let attempts: [(String, Message)] = [
                    ("RUN_COMMAND", .runCommand(RunCommand(shellID: rootShell.id, commandLine: "whoami"))),
                    ("RECEIVE", .receive(ReceiveOutput(shellID: rootShell.id, commandID: cat.id))),
                    ("SEND", .send(SendInput(shellID: rootShell.id, commandID: cat.id, endOfStream: true, data: Array("injected".utf8)))),
                    ("SIGNAL", .signal(SignalRequest(shellID: rootShell.id, commandID: cat.id, code: "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/signal/terminate"))),
                    ("CONNECT", .connect(ConnectRequest(shellID: rootShell.id))),
                    ("DISCONNECT", .disconnect(DisconnectRequest(shellID: rootShell.id, idleTimeoutMs: 1))),
                    ("CLOSE_SHELL", .closeShell(shellID: rootShell.id)),
                ]
                for (name, message) in attempts {
                    let answer = try await onDedicatedThread { try intruder.request(message) }
                    let failure = answer.final.failure
                    #expect(failure?.code == WSManError.accessDenied || failure?.code == WSManError.invalidSelectors,
                            "\(name) on another user's shell: \(answer.final.message)")
                    #expect(failure?.message.contains("belongs to another user") == true, "\(name): \(answer.final.message)")
                }
                let closeByUser = try await user.airlockctl(daemon, ["close-shell", String(rootShell.id)])
                #expect(closeByUser.exitCode == 125, "stdout: \(closeByUser.stdoutText) stderr: \(closeByUser.stderrText)")
                #expect(closeByUser.stderrText.contains("ERROR_ACCESS_DENIED (5)"), "\(closeByUser.stderrText)")
                let userView = try await user.airlockctl(daemon, ["shells"])
                #expect(userView.exitCode == 0, "stderr: \(userView.stderrText)")
                #expect(userView.stdoutText == "No shells.\n")
                let userStatus = try await user.airlockctl(daemon, ["status", "--json"])
                let statusObject = try JSONSerialization.jsonObject(with: Data(userStatus.stdout)) as? [String: Any]
                #expect((statusObject?["shells"] as? [Any])?.isEmpty == true, "\(userStatus.stdoutText)")

                // Root's shell and command are untouched.
                try await cat.send(Array("still mine".utf8), endOfStream: true)
                #expect(try await cat.collectOutput().stdoutText == "still mine")
                #expect(try await rootShell.run("whoami").collectOutput().stdoutText.hasPrefix("senderName=root "))

                // The user's own shell: the user sees it alone, root sees both and closes it.
                let created = try await onDedicatedThread {
                    try intruder.request(.createShell(CreateShell(plugin: "echo")))
                }
                guard case .shellCreated(let userShell) = created.final.message else {
                    Issue.record("CREATE_SHELL as \(user.name): \(created.final.message)")
                    return
                }
                let userList = try await Self.shellList(try await user.airlockctl(daemon, ["shells", "--json"]))
                #expect(userList.map(\.id) == [userShell.shellID])
                #expect(userList.first?.owner == user.name)
                #expect(userList.first?.ownerUID == user.uid)
                let userTable = try await user.airlockctl(daemon, ["shells"])
                #expect(userTable.stdoutText.split(separator: "\n").contains { $0.hasPrefix("\(userShell.shellID) ") && $0.contains("\(user.name) (\(user.uid))") },
                        "\(userTable.stdoutText)")

                let everything = try await Self.shellList(try await daemon.airlockctl(["shells", "--json"]))
                #expect(Set(everything.map(\.id)) == [rootShell.id, userShell.shellID])
                let closed = try await daemon.airlockctl(["close-shell", String(userShell.shellID)])
                #expect(closed.exitCode == 0, "stderr: \(closed.stderrText)")
                #expect(closed.stdoutText == "Closed shell \(userShell.shellID).\n")
                // The owner's connection hears of it.
                let event = try await onDedicatedThread { () -> Frame? in
                    while true {
                        let frame = try intruder.nextFrame(timeout: .seconds(30))
                        if case .shellClosed(let closed) = frame.message, closed.shellID == userShell.shellID { return frame }
                    }
                }
                #expect(event != nil)
                #expect(try await Self.shellList(try await daemon.airlockctl(["shells", "--json"])).map(\.id) == [rootShell.id])
                try await rootShell.close()
            }
        }
    }

    // MARK: - Quotas

    @Test("MaxShells: one shell too many is ERROR_WSMAN_QUOTA_MAX_SHELLS")
    func maxShells() async throws {
        try await Daemon.with(plugins: [:], config: Self.echoConfiguration(quotas: #""MaxShells": 2"#)) { daemon in
            let connection = try await daemon.connect()
            defer { connection.close() }
            let first = try await connection.createShell(plugin: "echo")
            let second = try await connection.createShell(plugin: "echo")
            let error = await #expect(throws: AirlockError.self) { _ = try await connection.createShell(plugin: "echo") }
            #expect(error?.code == WSManError.quotaMaxShells, "\(String(describing: error))")
            #expect(error?.message.contains("MaxShells quota") == true, "\(String(describing: error))")
            try await first.close()
            let third = try await connection.createShell(plugin: "echo")
            try await second.close()
            try await third.close()
        }
    }

    @Test("MaxShellsPerUser: one shell too many for a user is ERROR_WSMAN_QUOTA_MAX_SHELLS")
    func maxShellsPerUser() async throws {
        try await Daemon.with(plugins: [:], config: Self.echoConfiguration(quotas: #""MaxShellsPerUser": 1"#)) { daemon in
            let connection = try await daemon.connect()
            defer { connection.close() }
            let first = try await connection.createShell(plugin: "echo")
            let error = await #expect(throws: AirlockError.self) { _ = try await connection.createShell(plugin: "echo") }
            #expect(error?.code == WSManError.quotaMaxShells, "\(String(describing: error))")
            #expect(error?.message.contains("MaxShellsPerUser") == true, "\(String(describing: error))")
            // Another connection of the same user counts too.
            let other = try await daemon.connect()
            defer { other.close() }
            let again = await #expect(throws: AirlockError.self) { _ = try await other.createShell(plugin: "echo") }
            #expect(again?.code == WSManError.quotaMaxShells)
            try await first.close()
        }
    }

    @Test("MaxConcurrentUsers: a user beyond it is ERROR_WSMAN_QUOTA_USER", .enabled(if: testsRunAsRoot, "needs root: the test creates a second local user (useradd) and acts as it"))
    func maxConcurrentUsers() async throws {
        try await TemporaryUser.with { user in
            let config = Self.echoConfiguration(quotas: #""MaxConcurrentUsers": 1"#, top: #""SocketMode": "0666","#)
            try await Daemon.with(plugins: [:], config: config) { daemon in
                let connection = try await daemon.connect()
                defer { connection.close() }
                let shell = try await connection.createShell(plugin: "echo")
                let refused = try await user.airlockctl(daemon, ["run", "--plugin", "echo", "--", "hello"])
                #expect(refused.exitCode == 125, "stdout: \(refused.stdoutText) stderr: \(refused.stderrText)")
                #expect(refused.stderrText.contains("ERROR_WSMAN_QUOTA_USER (0x803381A7)"), "\(refused.stderrText)")
                #expect(refused.stderrText.contains("MaxConcurrentUsers"), "\(refused.stderrText)")
                // Root's second shell is fine: root is already one of the users.
                let second = try await connection.createShell(plugin: "echo")
                try await second.close()
                try await shell.close()
                let allowed = try await user.airlockctl(daemon, ["run", "--plugin", "echo", "--", "hello"])
                #expect(allowed.exitCode == 0, "stderr: \(allowed.stderrText)")
                #expect(allowed.stdoutText == "hello\n")
            }
        }
    }

    @Test("MaxConcurrentCommandsPerShell: one command too many is ERROR_WSMAN_QUOTA_LIMIT")
    func maxConcurrentCommandsPerShell() async throws {
        try await Daemon.with(plugins: [:], config: Self.echoConfiguration(quotas: #""MaxConcurrentCommandsPerShell": 2"#)) { daemon in
            let connection = try await daemon.connect()
            defer { connection.close() }
            let shell = try await connection.createShell(plugin: "echo")
            let first = try await shell.run("cat")
            let second = try await shell.run("cat")
            let error = await #expect(throws: AirlockError.self) { _ = try await shell.run("cat") }
            #expect(error?.code == WSManError.quotaLimit, "\(String(describing: error))")
            #expect(error?.message.contains("MaxConcurrentCommandsPerShell") == true, "\(String(describing: error))")
            // Once a command ends there is room again.
            try await first.send([], endOfStream: true)
            _ = try await first.collectOutput()
            let third = try await Self.retryingWhileQuotaExceeded { try await shell.run("third") }
            #expect(try await third.collectOutput().stdoutText == "third\n")
            try await second.send([], endOfStream: true)
            _ = try await second.collectOutput()
            try await shell.close()
        }
    }

    @Test("MaxConcurrentOperationsPerUser: one operation too many is ERROR_WSMAN_QUOTA_MAX_OPERATIONS")
    func maxConcurrentOperationsPerUser() async throws {
        try await Daemon.with(plugins: [:], config: Self.echoConfiguration(quotas: #""MaxConcurrentOperationsPerUser": 2"#)) { daemon in
            let connection = try await daemon.connect()
            defer { connection.close() }
            let shell = try await connection.createShell(plugin: "echo")
            let first = try await shell.run("cat")
            let second = try await shell.run("cat")
            // Two Receives wait for input: the user's two operations in flight. Each request
            // is written when its stream is made, so both are in before the third.
            let firstOutput = first.output()
            let secondOutput = second.output()
            let error = await #expect(throws: AirlockError.self) { _ = try await shell.run("one too many") }
            #expect(error?.code == WSManError.quotaMaxOperations, "\(String(describing: error))")
            #expect(error?.message.contains("MaxConcurrentOperationsPerUser") == true, "\(String(describing: error))")
            // Closing the shell (no quota applies to that) ends the Receives: room again.
            try await shell.close()
            do { for try await _ in firstOutput {} } catch {}
            do { for try await _ in secondOutput {} } catch {}
            let fresh = try await connection.createShell(plugin: "echo")
            let later = try await Self.retryingWhileQuotaExceeded { try await fresh.run("later") }
            #expect(try await later.collectOutput().stdoutText == "later\n")
            try await fresh.close()
        }
    }

    @Test("MaxConnectionsPerUser: one connection too many gets an ERROR frame (ERROR_WSMAN_QUOTA_LIMIT)")
    func maxConnectionsPerUser() async throws {
        try await Daemon.with(config: #"{ "MaxConnectionsPerUser": 3 }"#) { daemon in
            let socketPath = daemon.socketPath
            let refusal = try await onDedicatedThread { () -> Frame in
                let open = try (0..<3).map { _ in
                    let connection = try RawFrameConnection.connectBlocking(socketPath: socketPath)
                    try connection.handshake()
                    return connection
                }
                defer { open.forEach { $0.close() } }
                let extra = try RawFrameConnection.connectBlocking(socketPath: socketPath)
                defer { extra.close() }
                let frames = try extra.framesUntilClosed()
                guard let first = frames.first else { throw HarnessError("the fourth connection was closed without a frame") }
                return first
            }
            #expect(refusal.failure?.code == WSManError.quotaLimit, "\(refusal.message)")
            #expect(refusal.failure?.message.contains("MaxConnectionsPerUser") == true, "\(refusal.message)")
            // Room again once they are closed.
            let connection = try await Self.retryingWhileQuotaExceeded { try await daemon.connect() }
            #expect(try await connection.ping() > .zero)
            connection.close()
        }
    }

    // MARK: - Frames

    @Test("MaxEnvelopeSizekb is the frame limit: a frame of exactly the limit is served, one byte more is refused and the connection closed")
    func envelopeSize() async throws {
        try await Daemon.with(config: #"{ "MaxEnvelopeSizekb": 64 }"#) { daemon in
            let socketPath = daemon.socketPath
            let (ack, atLimit, overLimit) = try await onDedicatedThread { () -> (HelloAck, Frame, [Frame]) in
                let connection = try RawFrameConnection.connectBlocking(socketPath: socketPath)
                defer { connection.close() }
                let ack = try connection.handshake()
                // SEND's fixed fields take 50 bytes with the header and the "stdin" stream.
                func send(totalSize: Int) -> Frame {
                    Frame(operationID: connection.allocateOperationID(), message: .send(SendInput(
                        shellID: 424_242, commandID: 0, stream: "stdin", endOfStream: false, data: [UInt8](repeating: 0x61, count: totalSize - 50))))
                }
                let exact = send(totalSize: 65_536)
                precondition(exact.encoded().count == 65_536)
                try connection.send(exact)
                let atLimit = try connection.nextFrame()
                try? connection.send(send(totalSize: 65_537))
                let frames = try connection.framesUntilClosed()
                return (ack, atLimit, frames)
            }
            #expect(ack.maxFrameSize == 65_536)
            // Accepted: answered as a request about a shell that does not exist.
            #expect(atLimit.failure?.code == WSManError.invalidSelectors, "\(atLimit.message)")
            #expect(overLimit.count == 1, "\(overLimit.map(\.message))")
            #expect(overLimit.first?.operationID == 0)
            #expect(overLimit.first?.failure?.code == WSManError.maxEnvelopeSizeExceeded, "\(overLimit.map(\.message))")
            #expect(overLimit.first?.failure?.message == "frame of 65537 bytes exceeds the maximum frame size of 65536 bytes", "\(overLimit.map(\.message))")
            let connection = try await daemon.connect()
            #expect(connection.server.maxFrameSize == 65_536)
            #expect(try await connection.ping() > .zero)
            connection.close()
        }
    }

    @Test("every kind of malformed frame gets an ERROR frame naming the problem, then the connection closes")
    func malformedFrames() async throws {
        try await Daemon.with { daemon in
            let socketPath = daemon.socketPath
            for malformed in MalformedFrame.all {
                let frames = try await onDedicatedThread { () -> [Frame] in
                    let connection = try RawFrameConnection.connectBlocking(socketPath: socketPath)
                    defer { connection.close() }
                    if malformed.afterHandshake { try connection.handshake() }
                    try? connection.send(malformed.bytes)
                    return try connection.framesUntilClosed()
                }
                #expect(frames.count == 1, "\(malformed.name): \(frames.map(\.message))")
                let error = frames.first
                #expect(error?.operationID == 0, "\(malformed.name)")
                guard case .error(let report) = error?.message else {
                    Issue.record("\(malformed.name): expected an ERROR frame, got \(frames.map(\.message))")
                    continue
                }
                #expect(report.errorCode == malformed.code, "\(malformed.name): \(WSManError.name(report.errorCode)): \(report.message)")
                #expect(report.message.contains(malformed.mentions), "\(malformed.name): \(report.message)")
            }
            #expect(processIsAlive(daemon.pid))
            let connection = try await daemon.connect()
            defer { connection.close() }
            let shell = try await connection.createShell(plugin: "echo")
            #expect(try await shell.run("fine").collectOutput().stdoutText == "fine\n")
            try await shell.close()
        }
    }

    @Test("1,000 idle connections, garbage and stalled half frames leave a well-behaved client served")
    func robustness() async throws {
        try Self.raiseOpenFileLimit(to: 4096)
        try await Daemon.with(config: #"{ "MaxConnectionsPerUser": 4000 }"#) { daemon in
            let socketPath = daemon.socketPath
            let idle = try await onDedicatedThread { try Self.openIdleConnections(1000, socketPath: socketPath) }
            defer { idle.forEach { $0.close() } }

            // Stalled: half a HELLO, or half a PING after the handshake.
            let stalls = (0..<6).map { index in
                Task {
                    try await onDedicatedThread { () -> (frames: [Frame], seconds: Double) in
                        let connection = try RawFrameConnection.connectBlocking(socketPath: socketPath)
                        defer { connection.close() }
                        var bytes = Frame(operationID: 0, message: .hello(Hello(clientName: "stalled"))).encoded()
                        if index % 2 == 1 {
                            try connection.handshake()
                            bytes = Frame(operationID: 7, message: .ping(token: 7)).encoded()
                        }
                        try connection.send(Array(bytes[0..<(index < 2 ? 3 : bytes.count / 2)]))
                        let start = ContinuousClock.now
                        let frames = try connection.framesUntilClosed(timeout: .seconds(60))
                        let elapsed = ContinuousClock.now - start
                        return (frames, Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
                    }
                }
            }

            // Garbage: connection after connection of random bytes until the client is done.
            let stop = StopFlag()
            let garbage = Task {
                try await onDedicatedThread { () -> (connections: Int, errors: Int) in
                    var connections = 0, errors = 0
                    var generator = SystemRandomNumberGenerator()
                    while !stop.isSet || connections < 3 {
                        let connection = try RawFrameConnection.connectBlocking(socketPath: socketPath)
                        defer { connection.close() }
                        connections += 1
                        let bytes = (0..<65_536).map { _ in UInt8.random(in: 0...255, using: &generator) }
                        try? connection.send(bytes)
                        let frames = try connection.framesUntilClosed(timeout: .seconds(30))
                        if frames.contains(where: { if case .error = $0.message { true } else { false } }) { errors += 1 }
                    }
                    return (connections, errors)
                }
            }

            // The well-behaved client.
            let connection = try await daemon.connect()
            defer { connection.close() }
            let report = try await connection.statusReport()
            #expect((report.supervisor?.connections ?? 0) > 1000, "connections: \(String(describing: report.supervisor?.connections))")
            let shell = try await connection.createShell(plugin: "echo")
            let clock = ContinuousClock()
            let start = clock.now
            for round in 0..<200 {
                let output = try await shell.run("round \(round)").collectOutput()
                #expect(output.stdoutText == "round \(round)\n")
            }
            let elapsed = clock.now - start
            #expect(elapsed < .seconds(120), "200 echo round trips took \(elapsed)")
            stop.set()

            let (connections, errors) = try await garbage.value
            #expect(errors == connections, "\(connections) garbage connections, \(errors) answered with ERROR")
            for (index, stall) in stalls.enumerated() {
                let (frames, seconds) = try await stall.value
                let reports = frames.compactMap { frame -> ErrorReport? in if case .error(let report) = frame.message { report } else { nil } }
                #expect(reports.count == 1, "stall \(index): \(frames.map(\.message))")
                #expect(reports.first?.message.contains("10 seconds") == true, "stall \(index): \(reports)")
                #expect(seconds >= 9, "stall \(index) was closed after \(seconds) s, before the 10 s deadline")
            }
            try await shell.close()

            // The idle connections were left alone all along.
            let answered = try await onDedicatedThread { () -> Int in
                var answered = 0
                for (index, idleConnection) in idle.enumerated() {
                    try idleConnection.send(Frame(operationID: UInt64(index + 1), message: .ping(token: UInt64(index))))
                }
                for idleConnection in idle {
                    if case .pong = try idleConnection.nextFrame(timeout: .seconds(30)).message { answered += 1 }
                }
                return answered
            }
            #expect(answered == idle.count)
            #expect(processIsAlive(daemon.pid))
        }
    }

    // MARK: - Helpers

    /// A configuration with the echo plug-in and `quotas` (members of its `Quotas` object);
    /// `top` adds top-level members (with a trailing comma).
    static func echoConfiguration(quotas: String, top: String = "") -> String {
        """
        {
          \(top)
          "Plugins": [ { "Name": "echo", "Filename": "\(Daemon.pluginPath("echo"))", "Quotas": { \(quotas) } } ],
        }
        """
    }

    /// Opens `count` connections, performs every handshake, and returns them idle.
    static func openIdleConnections(_ count: Int, socketPath: String) throws -> [RawFrameConnection] {
        var connections: [RawFrameConnection] = []
        connections.reserveCapacity(count)
        do {
            for index in 0..<count {
                let connection = try RawFrameConnection.connectBlocking(socketPath: socketPath)
                connections.append(connection)
                try connection.send(Frame(operationID: 0, message: .hello(Hello(clientName: "idle-\(index)"))))
            }
            for connection in connections {
                guard case .helloAck = try connection.nextFrame().message else { throw HarnessError("an idle connection got no HELLO_ACK") }
            }
        } catch {
            connections.forEach { $0.close() }
            throw error
        }
        return connections
    }
}

// MARK: - Malformed frames

/// One kind of malformed client input and the `ERROR` it must get.
struct MalformedFrame: Sendable {
    var name: String
    /// Sent after a successful handshake (otherwise as the first bytes).
    var afterHandshake: Bool
    var bytes: [UInt8]
    var code: UInt32
    /// A phrase the ERROR frame's message must contain.
    var mentions: String

    /// A frame header (length prefix included) followed by `payload`; `length` overrides the
    /// length prefix.
    static func frame(type: UInt16, flags: UInt16 = 0, operationID: UInt64 = 1, payload: [UInt8], length: UInt32? = nil) -> [UInt8] {
        var bytes: [UInt8] = []
        func append<T: FixedWidthInteger>(_ value: T) { withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) } }
        append(length ?? UInt32(12 + payload.count))
        append(type)
        append(flags)
        append(operationID)
        return bytes + payload
    }

    /// A `str` field with these raw bytes.
    static func str(_ raw: [UInt8]) -> [UInt8] {
        withUnsafeBytes(of: UInt32(raw.count).littleEndian) { Array($0) } + raw
    }

    static let all: [MalformedFrame] = {
        let invalid = WSManError.invalidParameter
        let ping = Frame(operationID: 1, message: .ping(token: 1)).encoded()
        var hello = Frame(operationID: 0, message: .hello(Hello(magic: 0xDEAD_BEEF, clientName: "bad-magic"))).encoded()
        let badMagic = hello
        hello = Frame(operationID: 0, message: .hello(Hello(minVersion: 2, maxVersion: 3, clientName: "future"))).encoded()
        let badVersion = hello
        return [
            MalformedFrame(name: "bad magic", afterHandshake: false, bytes: badMagic, code: invalid, mentions: "magic"),
            MalformedFrame(name: "no common version", afterHandshake: false, bytes: badVersion, code: invalid, mentions: "version"),
            MalformedFrame(name: "first frame not HELLO", afterHandshake: false, bytes: ping, code: invalid, mentions: "the first frame must be HELLO"),
            MalformedFrame(name: "bad UTF-8 before the handshake", afterHandshake: false,
                           bytes: frame(type: 0x0001, operationID: 0, payload: [0x41, 0x52, 0x4C, 0x4B, 1, 0, 1, 0] + str([0xC0, 0xAF])),
                           code: invalid, mentions: "not valid UTF-8"),
            MalformedFrame(name: "oversized before the handshake", afterHandshake: false,
                           bytes: frame(type: 0x0001, operationID: 0, payload: [], length: 5000),
                           code: WSManError.maxEnvelopeSizeExceeded, mentions: "exceeds the maximum frame size of 4096 bytes"),
            MalformedFrame(name: "unknown type", afterHandshake: true, bytes: frame(type: 0x7777, payload: []),
                           code: invalid, mentions: "unknown message type 0x7777"),
            MalformedFrame(name: "length below 12", afterHandshake: true, bytes: frame(type: 0x0003, payload: [], length: 8),
                           code: invalid, mentions: "below the minimum of 12"),
            MalformedFrame(name: "trailing bytes", afterHandshake: true, bytes: frame(type: 0x0003, payload: [1, 0, 0, 0, 0, 0, 0, 0, 0xFF]),
                           code: invalid, mentions: "trailing"),
            MalformedFrame(name: "truncated field", afterHandshake: true, bytes: frame(type: 0x0181, payload: [100, 0, 0, 0, 0x61, 0x62, 0x63]),
                           code: invalid, mentions: "field"),
            MalformedFrame(name: "bad UTF-8", afterHandshake: true, bytes: frame(type: 0x0181, payload: str([0x65, 0xED, 0xA0, 0x80])),
                           code: invalid, mentions: "not valid UTF-8"),
            MalformedFrame(name: "NUL in a string", afterHandshake: true, bytes: frame(type: 0x0181, payload: str([0x65, 0x00])),
                           code: invalid, mentions: "NUL"),
            MalformedFrame(name: "undefined flag bits", afterHandshake: true, bytes: frame(type: 0x0003, flags: 0x8000, payload: [1, 0, 0, 0, 0, 0, 0, 0]),
                           code: invalid, mentions: "flag"),
            MalformedFrame(name: "a server's message", afterHandshake: true,
                           bytes: Frame(operationID: 1, message: .statusReply(json: "{}")).encoded(),
                           code: invalid, mentions: "STATUS_REPLY"),
            MalformedFrame(name: "a request on operation 0", afterHandshake: true,
                           bytes: Frame(operationID: 0, message: .status(plugin: "")).encoded(),
                           code: invalid, mentions: "non-zero operation id"),
            MalformedFrame(name: "oversized length prefix", afterHandshake: true, bytes: frame(type: 0x0003, payload: [], length: 0xFFFF_FFF0),
                           code: WSManError.maxEnvelopeSizeExceeded, mentions: "exceeds the maximum frame size"),
        ]
    }()
}

// MARK: - Helpers

extension SecurityTests {

    /// Retries `body` while it fails with a quota or "not yet" error, for up to `timeout`: the
    /// supervisor frees a slot when the worker's completion arrives, a moment after the client
    /// saw the operation end.
    static func retryingWhileQuotaExceeded<T>(timeout: Duration = .seconds(20), _ body: () async throws -> T) async throws -> T {
        let deadline = ContinuousClock.now + timeout
        while true {
            do {
                return try await body()
            } catch let error as AirlockError where ContinuousClock.now < deadline
                && [WSManError.quotaLimit, WSManError.quotaMaxOperations, WSManError.quotaMaxShells, WSManError.quotaUser].contains(error.code) {
                try await Task.sleep(for: .milliseconds(50))
            }
        }
    }

    /// A flag one thread sets and another polls.
    final class StopFlag: Sendable {
        private let value = Atomic<Bool>(false)
        var isSet: Bool { value.load(ordering: .relaxed) }
        func set() { value.store(true, ordering: .relaxed) }
    }

    /// The shells of `airlockctl shells --json`.
    static func shellList(_ outcome: ChildProcess.Outcome) async throws -> [ShellStatus] {
        guard outcome.exitCode == 0 else {
            throw HarnessError("airlockctl shells --json: \(outcome.status): \(outcome.stderrText)")
        }
        return try JSONDecoder().decode([ShellStatus].self, from: Data(outcome.stdout))
    }

    /// Raises this process's soft `RLIMIT_NOFILE` to at least `minimum` (within the hard limit);
    /// daemons started afterwards inherit it.
    static func raiseOpenFileLimit(to minimum: rlim_t) throws {
        var limit = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 else { throw HarnessError("getrlimit: errno \(errno)") }
        guard limit.rlim_cur < minimum else { return }
        guard limit.rlim_max >= minimum else {
            throw HarnessError("the hard RLIMIT_NOFILE is \(limit.rlim_max); this test needs \(minimum) open files")
        }
        limit.rlim_cur = minimum
        guard setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 else { throw HarnessError("setrlimit: errno \(errno)") }
    }
}
