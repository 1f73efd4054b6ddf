import AirlockPosix
import Testing

/// Issue 8 end to end: pywinrm 0.5.0 and pypsrp 0.9.1 (from PyPI, in the venv
/// `deploy/setup-debian.sh` creates) drive a real airlock-wsman in front of a real
/// airlockd with the `shell`, `echo` and hostile plug-ins. Each test runs one scenario of
/// `Tests/Gateway/<client>_scenarios.py` and checks what a user of that client would.
///
/// One airlockd and one airlock-wsman serve the whole suite (``GatewayEnvironmentTrait``);
/// the tests run against them in parallel, which is itself part of the point.
@Suite("WS-Man gateway: pywinrm and pypsrp end to end (issue 8)", .gatewayEnvironment)
struct GatewayClientTests {
    /// `ERROR_WSMAN_INVALID_SELECTORS` (0x8033805B): unknown shell or command.
    static let invalidSelectors = 2_150_858_843
    /// `ERROR_WSMAN_PLUGIN_FAILED` (0x80338083): the plug-in's worker died.
    static let pluginFailed = 2_150_858_883

    @Test("stdout, stderr and exit codes come through apart", arguments: WinRMClient.allCases)
    func streams(client: WinRMClient) async throws {
        let report = try await GatewayEnvironment.require().run(client, "streams")
        let mixed = report["mixed"]
        #expect(mixed?["stdout"]?.string == "out\n", "\(report)")
        #expect(mixed?["stderr"]?.string == "err\n", "\(report)")
        #expect(mixed?["exit_code"]?.int == 3, "\(report)")
        #expect(report["hello"]?["stdout"]?.string == "hello world\n", "arguments joined into one command line: \(report)")
        #expect(report["hello"]?["stderr"]?.string == "", "\(report)")
        #expect(report["hello"]?["exit_code"]?.int == 0, "\(report)")
    }

    @Test("standard input sent in pieces reaches the command in order", arguments: WinRMClient.allCases)
    func stdinInPieces(client: WinRMClient) async throws {
        let report = try await GatewayEnvironment.require().run(client, "stdin-pieces")
        switch client {
        case .pywinrm:
            #expect(report["stdout"]?.string == report["expected"]?.string, "cat's output is its input: \(report)")
            #expect(report["stdout"]?.string == "first piece\nsecond piece\nthird piece, the last\n", "\(report)")
            #expect(report["exit_code"]?.int == 0, "\(report)")
        case .pypsrp:
            // Each piece was answered before the next was sent.
            #expect(report["seen_between"] == .array([.string("got:one\n"), .string("got:one\ngot:two\n"), .string("got:one\ngot:two\ngot:three\n")]),
                    "\(report)")
            #expect(report["lines"]?["stdout"]?.string == "got:one\ngot:two\ngot:three\neof\n", "end of input ends the loop: \(report)")
            #expect(report["lines"]?["exit_code"]?.int == 0, "\(report)")
            #expect(report["cat_intact"]?.bool == true, "three pieces of 6, 100,001 and 5 bytes through cat: \(report)")
            #expect(report["cat_exit_code"]?.int == 0, "\(report)")
        }
    }

    @Test("two commands in one shell", arguments: WinRMClient.allCases)
    func twoCommandsInOneShell(client: WinRMClient) async throws {
        let report = try await GatewayEnvironment.require().run(client, "two-commands")
        switch client {
        case .pywinrm:
            let commands = report["commands"]
            #expect(commands?[0]?["stdout"]?.string == "first\n", "\(report)")
            #expect(commands?[0]?["exit_code"]?.int == 0, "\(report)")
            #expect(commands?[1]?["stdout"]?.string == "second\n", "\(report)")
            #expect(commands?[1]?["exit_code"]?.int == 5, "\(report)")
        case .pypsrp:
            #expect(report["first_done_while_second_ran"]?.bool == false, "cat waited for input while the second command ran: \(report)")
            #expect(report["first"]?["stdout"]?.string == "first\n", "\(report)")
            #expect(report["first"]?["exit_code"]?.int == 0, "\(report)")
            #expect(report["second"]?["stdout"]?.string == "second\n", "\(report)")
            #expect(report["second"]?["exit_code"]?.int == 0, "\(report)")
            #expect(report["third"]?["exit_code"]?.int == 5, "\(report)")
        }
    }

    @Test("a command that outlasts OperationTimeout: timeout faults, retried, then its output", arguments: WinRMClient.allCases)
    func outlastsOperationTimeout(client: WinRMClient) async throws {
        // OperationTimeout 2 s, `sleep 7; echo finished`.
        let report = try await GatewayEnvironment.require().run(client, "long-command")
        #expect(report["stdout"]?.string == "finished\n", "\(report)")
        #expect(report["exit_code"]?.int == 0, "\(report)")
        #expect((report["operation_timeouts"]?.int ?? 0) >= 1,
                "a Receive with nothing to report within OperationTimeout is answered with fault 2150858793: \(report)")
    }

    @Test("300 KB of output arrive intact, in answers within MaxEnvelopeSize", arguments: WinRMClient.allCases)
    func largeOutput(client: WinRMClient) async throws {
        let report = try await GatewayEnvironment.require().run(client, "large-output")
        #expect(report["length"]?.int == 318_894, "`seq 1 55000` is 318,894 bytes: \(report)")
        #expect(report["sha256"] == report["expected_sha256"], "\(report)")
        #expect(report["first_difference"]?.isNull == true, "\(report)")
        #expect(report["exit_code"]?.int == 0, "\(report)")
        if client == .pywinrm {
            let largest = report["largest_answer_bytes"]?.int ?? .max
            #expect(largest <= report["max_envelope_size"]?.int ?? 0, "an answer larger than the client's MaxEnvelopeSize: \(report)")
            #expect((report["receives"]?.int ?? 0) >= 3, "318,894 bytes need several answers of at most 153,600: \(report)")
        }
    }

    @Test("bytes that are not ASCII pass unchanged, in output, input and the command line", arguments: WinRMClient.allCases)
    func nonASCIIBytes(client: WinRMClient) async throws {
        let report = try await GatewayEnvironment.require().run(client, "non-ascii")
        #expect(report["printf_hex"]?.string == "c3a9ff0001", "printf '\\303\\251\\377\\000\\001': \(report)")
        #expect(report["printf_exit_code"]?.int == 0, "\(report)")
        #expect(report["echo_hex"] == report["echo_expected_hex"], "a UTF-8 argument echoed: \(report)")
        #expect(report["cat_hex"] == report["cat_expected_hex"], "bytes through cat's standard input: \(report)")
        #expect(report["cat_exit_code"]?.int == 0, "\(report)")
        if client == .pypsrp {
            #expect(report["execute_cmd_utf8"] == report["execute_cmd_expected"], "execute_cmd(encoding='utf-8'): \(report)")
        }
    }

    @Test("the shell's environment variables and working directory reach its commands", arguments: WinRMClient.allCases)
    func environmentAndWorkingDirectory(client: WinRMClient) async throws {
        let report = try await GatewayEnvironment.require().run(client, "environment")
        switch client {
        case .pywinrm:
            #expect(report["stdout"]?.string == "hello from pywinrm\na b  c\n/tmp\n", "\(report)")
            #expect(report["exit_code"]?.int == 0, "\(report)")
        case .pypsrp:
            #expect(report["shell"]?["stdout"]?.string == "hello from pypsrp\na b  c\n/tmp\n", "\(report)")
            #expect(report["shell"]?["exit_code"]?.int == 0, "\(report)")
            #expect(report["execute_cmd"]?["stdout"]?.string == "from execute_cmd\n", "execute_cmd(environment=...): \(report)")
        }
    }

    @Test("ctrl_c ends a running command: exit code 130 (pypsrp Process.signal)")
    func controlC() async throws {
        let report = try await GatewayEnvironment.require().run(.pypsrp, "ctrl-c")
        #expect(report["running_before_signal"]?.bool == true, "\(report)")
        #expect(report["done"]?.bool == true, "\(report)")
        #expect(report["exit_code"]?.int == 130, "128 + SIGINT: \(report)")
        #expect(report["stdout"]?.string == "ready\n", "the command did not run on after ctrl_c: \(report)")
    }

    @Test("terminate on a running command, then Delete; the next command works (pywinrm)")
    func terminateRunning() async throws {
        let report = try await GatewayEnvironment.require().run(.pywinrm, "terminate-running")
        #expect(report["after"]?["stdout"]?.string == "after terminate\n", "\(report)")
        #expect(report["after"]?["exit_code"]?.int == 0, "\(report)")
    }

    @Test("an unknown shell or command is the InvalidSelectors fault", arguments: WinRMClient.allCases)
    func unknownShell(client: WinRMClient) async throws {
        let report = try await GatewayEnvironment.require().run(client, "unknown-shell")
        for target in ["shell", "command"] {
            let fault = report[target]
            #expect(fault?["exception"]?.string == "WSManFaultError", "\(target): \(report)")
            #expect(fault?["wsman_fault_code"]?.int == Self.invalidSelectors, "\(target): \(report)")
            if client == .pywinrm {
                #expect(fault?["http_status"]?.int == 500, "\(target): faults are HTTP 500: \(report)")
                #expect(fault?["fault_subcode"]?.string?.hasSuffix("InvalidSelectors") == true, "\(target): \(report)")
            }
        }
    }

    @Test("a wrong password, or an unknown user, is refused", arguments: WinRMClient.allCases)
    func wrongPassword(client: WinRMClient) async throws {
        let report = try await GatewayEnvironment.require().run(client, "wrong-password")
        let expected = client == .pywinrm ? "InvalidCredentialsError" : "AuthenticationError"
        #expect(report["wrong_password"]?["exception"]?.string == expected, "\(report)")
        #expect(report["unknown_user"]?["exception"]?.string == expected, "\(report)")
    }

    @Test("a plug-in crash during a command is a fault; the gateway and airlockd stay up")
    func pluginCrash() async throws {
        let environment = try GatewayEnvironment.require()
        let report = try await environment.run(.pypsrp, "plugin-crash")
        for (name, phase) in [("in_command", "command"), ("during_receive", "receive")] {
            let fault = report[name]
            #expect(fault?["exception"]?.string == "WSManFaultError", "\(name): \(report)")
            #expect(fault?["wsman_fault_code"]?.int == Self.pluginFailed, "\(name): ERROR_WSMAN_PLUGIN_FAILED: \(report)")
            #expect(fault?["phase"]?.string == phase, "\(name): \(report)")
        }
        #expect(report["after"]?["stdout"]?.string == "still working\n", "pypsrp's next command: \(report)")
        environment.expectBothRunning()
        let after = try await environment.run(.pywinrm, "echo")
        #expect(after["stdout"]?.string == "still working\n", "pywinrm's next command: \(after)")
        environment.expectBothRunning()
    }

    @Test("the plug-in sees the HTTP user, mechanism Basic and the URL (echo plug-in's whoami)", arguments: GatewayEnvironment.users)
    func identity(user: GatewayProcess.User) async throws {
        let environment = try GatewayEnvironment.require()
        let report = try await environment.run(.pypsrp, "whoami", as: user)
        let line = report["stdout"]?.string ?? ""
        #expect(line.hasPrefix("senderName=\(user.name) "), "\(report)")
        #expect(line.contains(" authenticationMechanism=Basic "), "\(report)")
        #expect(line.contains(" resourceUri=\(GatewayEnvironment.echoResourceURI)"), "\(report)")
        #expect(line.contains(" httpURL=\(environment.gateway.url)"), "the URL the client used: \(report)")
        #expect(report["exit_code"]?.int == 0, "\(report)")
    }

    @Test("12 clients at once while another holds a long Receive: all succeed, none waits for it")
    func concurrentClients() async throws {
        let report = try await GatewayEnvironment.require().run(.pypsrp, "concurrent")
        let clients = report["clients"]?.array ?? []
        #expect(clients.count == 12, "\(report)")
        for (index, client) in clients.enumerated() {
            #expect(client["stdout"]?.string == "client \(index)\n", "client \(index) (\(index < 8 ? "pywinrm" : "pypsrp")): \(client)")
            #expect(client["exit_code"]?.int == 0, "client \(index): \(client)")
        }
        #expect(report["held_done_before_release"]?.bool == false, "the held command ended before its input did: \(report)")
        #expect(report["held"]?["stdout"]?.string == "release\n", "\(report)")
        #expect(report["held"]?["exit_code"]?.int == 0, "\(report)")
        #expect(report["held_errors"] == .array([]), "\(report)")
    }
}
