import AirlockPosix
import Testing

/// airlock-wsman's default authentication, PAM, end to end: a real local user with a
/// password, checked through the `airlock-wsman` PAM service (deploy/pam.d/airlock-wsman
/// when installed; otherwise PAM's `other`, which on Debian includes the same
/// common-auth and common-account).
@Suite("WS-Man gateway: system users through PAM (issue 8)")
struct GatewayPAMTests {
    @Test(
        "a system user's password is checked by PAM and the plug-in sees that user; a wrong password is refused",
        .enabled(if: testsRunAsRoot, "needs root: creates a local user (useradd), sets its password (chpasswd), reads /etc/shadow"))
    func systemUser() async throws {
        _ = try WinRMScript.pythonInterpreter()
        try await TemporaryUser.with { account in
            var generator = SystemRandomNumberGenerator()
            let user = GatewayProcess.User(name: account.name, password: "pam-" + String(UInt64.random(in: 0...UInt64.max, using: &generator), radix: 36))
            try await Self.setPassword(of: user)
            try await Daemon.with(plugins: [:], config: GatewayEnvironment.daemonConfiguration) { daemon in
                try await GatewayProcess.with(socketPath: daemon.socketPath, authentication: .pam(service: "airlock-wsman")) { gateway in
                    let whoami = try await WinRMScript(client: .pypsrp).run("whoami", url: gateway.url, user: user, gateway: gateway, daemon: daemon)
                    let line = whoami["stdout"]?.string ?? ""
                    #expect(line.hasPrefix("senderName=\(user.name) authenticationMechanism=Basic "), "\(whoami)")

                    let refused = try await WinRMScript(client: .pywinrm).run("wrong-password", url: gateway.url, user: user, gateway: gateway, daemon: daemon)
                    #expect(refused["wrong_password"]?["exception"]?.string == "InvalidCredentialsError", "\(refused)")
                    #expect(refused["unknown_user"]?["exception"]?.string == "InvalidCredentialsError", "\(refused)")
                }
            }
        }
    }

    /// `chpasswd` with `name:password`; retried while another test holds the password
    /// file's lock.
    static func setPassword(of user: GatewayProcess.User) async throws {
        for attempt in 1...30 {
            let outcome = try await ChildProcess.start(
                "/usr/sbin/chpasswd", [], input: .bytes(Array("\(user.name):\(user.password)\n".utf8))
            ).finish()
            if outcome.exitCode == 0 { return }
            if attempt == 30 {
                throw HarnessError("chpasswd for \(user.name) failed \(attempt) times; last: \(outcome.status): \(outcome.stderrText)")
            }
            try await Task.sleep(for: .milliseconds(100 + 50 * attempt))
        }
    }
}
