import AirlockClient
import Foundation
import Glibc
import Testing

/// `ASSERT_IDENTITY`: a trusted gateway makes a connection act for a user it
/// authenticated (PROTOCOL.md §5.2), against a real airlockd and the echo plug-in.
@Suite("Identity assertion by a trusted gateway")
struct IdentityAssertionTests {
    static let echo = Daemon.pluginPath("echo")
    static let url = "http://127.0.0.1:5985/wsman"

    static func gatewayUser(_ name: String, system: Bool = false) -> AssertedIdentity {
        AssertedIdentity(userName: name, authenticationMechanism: "Basic", httpURL: url, isSystemAccount: system)
    }

    /// A configuration trusting this test process's uid, with `plugins` as JSON objects.
    static func config(trusted: Bool = true, plugins: [String]) -> String {
        let trust = trusted ? #""TrustedGateways": ["\#(getuid())"],"# : ""
        return "{ \(trust) \"Plugins\": [\(plugins.joined(separator: ", "))] }"
    }

    static func whoami(_ connection: AirlockConnection, plugin: String) async throws -> String {
        let shell = try await connection.createShell(plugin: plugin)
        let output = try await shell.run("whoami").collectOutput()
        try await shell.close()
        return output.stdoutText
    }

    @Test("an untrusted peer's assertion is refused with ERROR_ACCESS_DENIED naming TrustedGateways")
    func untrustedPeerRefused() async throws {
        let config = Self.config(trusted: false, plugins: [#"{ "Name": "echo", "Filename": "\#(Self.echo)" }"#])
        try await Daemon.with(plugins: [:], config: config) { daemon in
            let error = await #expect(throws: AirlockError.self) {
                _ = try await AirlockConnection.connect(socketPath: daemon.socketPath, assertedIdentity: Self.gatewayUser("alice"))
            }
            #expect(error?.code == WSManError.accessDenied)
            #expect(error?.message.contains("TrustedGateways") == true, "\(String(describing: error))")
            // The daemon keeps serving the peer as itself.
            let plain = try await daemon.connect()
            #expect(try await Self.whoami(plain, plugin: "echo").hasPrefix("senderName=root authenticationMechanism=UnixPeerCredentials "))
        }
    }

    @Test("the plug-in sees the asserted user, mechanism and URL in WSMAN_SENDER_DETAILS")
    func pluginSeesAssertedUser() async throws {
        let config = Self.config(plugins: [#"{ "Name": "echo", "Filename": "\#(Self.echo)" }"#])
        try await Daemon.with(plugins: [:], config: config) { daemon in
            let alice = try await AirlockConnection.connect(socketPath: daemon.socketPath, assertedIdentity: Self.gatewayUser("alice"))
            #expect(alice.assertedIdentity?.userName == "alice")
            let text = try await Self.whoami(alice, plugin: "echo")
            #expect(text.hasPrefix("senderName=alice authenticationMechanism=Basic resourceUri="), "\(text)")
            #expect(text.hasSuffix(" httpURL=\(Self.url)\n"), "\(text)")
            // A system account asserted by name.
            let nobody = try await AirlockConnection.connect(socketPath: daemon.socketPath, assertedIdentity: Self.gatewayUser("nobody", system: true))
            #expect(try await Self.whoami(nobody, plugin: "echo").hasPrefix("senderName=nobody authenticationMechanism=Basic "))
        }
    }

    @Test("access lists name a gateway-only user gateway:<name>; a system account by its own name")
    func accessLists() async throws {
        let config = Self.config(plugins: [
            #"{ "Name": "for-alice", "Filename": "\#(Self.echo)", "AllowedUsers": ["alice"] }"#,
            #"{ "Name": "for-gateway-alice", "Filename": "\#(Self.echo)", "AllowedUsers": ["gateway:alice"] }"#,
            #"{ "Name": "for-nobody", "Filename": "\#(Self.echo)", "AllowedUsers": ["nobody"] }"#,
        ])
        try await Daemon.with(plugins: [:], config: config) { daemon in
            let alice = try await AirlockConnection.connect(socketPath: daemon.socketPath, assertedIdentity: Self.gatewayUser("alice"))
            let refused = await #expect(throws: AirlockError.self) { _ = try await alice.createShell(plugin: "for-alice") }
            #expect(refused?.code == WSManError.accessDenied)
            #expect(refused?.message.contains("gateway user alice") == true, "\(String(describing: refused))")
            #expect(try await Self.whoami(alice, plugin: "for-gateway-alice").hasPrefix("senderName=alice "))

            let nobody = try await AirlockConnection.connect(socketPath: daemon.socketPath, assertedIdentity: Self.gatewayUser("nobody", system: true))
            #expect(try await Self.whoami(nobody, plugin: "for-nobody").hasPrefix("senderName=nobody "))
            await #expect(throws: AirlockError.self) { _ = try await nobody.createShell(plugin: "for-gateway-alice") }
        }
    }

    @Test("a shell belongs to the asserted user; a gateway-only \"root\" is no administrator")
    func shellOwnership() async throws {
        let config = Self.config(plugins: [#"{ "Name": "echo", "Filename": "\#(Self.echo)" }"#])
        try await Daemon.with(plugins: [:], config: config) { daemon in
            let alice = try await AirlockConnection.connect(socketPath: daemon.socketPath, assertedIdentity: Self.gatewayUser("alice"))
            let shell = try await alice.createShell(plugin: "echo")
            let bob = try await AirlockConnection.connect(socketPath: daemon.socketPath, assertedIdentity: Self.gatewayUser("bob"))
            let error = await #expect(throws: AirlockError.self) { _ = try await bob.connectShell(id: shell.id) }
            #expect(error?.code == WSManError.accessDenied, "\(String(describing: error))")
            #expect(error?.message.contains("belongs to another user") == true, "\(String(describing: error))")
            // A gateway-only user called root is not the administrator root.
            let fakeRoot = try await AirlockConnection.connect(socketPath: daemon.socketPath, assertedIdentity: Self.gatewayUser("root"))
            #expect(try await !fakeRoot.status().contains("\"owner\""))
            await #expect(throws: AirlockError.self) { try await fakeRoot.reload() }
            #expect(try await shell.run("whoami").collectOutput().stdoutText.hasPrefix("senderName=alice "))
            // The status document shows alice's shell to alice.
            let status = try await alice.status()
            #expect(status.contains("gateway:alice"), "\(status)")
            try await shell.close()
        }
    }

    @Test("the assertion must come first, once, with valid fields; an unknown system account is refused")
    func assertionRules() async throws {
        let config = Self.config(plugins: [#"{ "Name": "echo", "Filename": "\#(Self.echo)" }"#])
        try await Daemon.with(plugins: [:], config: config) { daemon in
            for (identity, code, words) in [
                (Self.gatewayUser("no-such-user-\(getpid())", system: true), WSManError.accessDenied, "not an account"),
                (Self.gatewayUser(""), WSManError.invalidParameter, "userName must be"),
                (Self.gatewayUser("a:b"), WSManError.invalidParameter, "':'"),
                (AssertedIdentity(userName: "alice", authenticationMechanism: "", httpURL: "", isSystemAccount: false), WSManError.invalidParameter, "authenticationMechanism"),
            ] {
                let error = await #expect(throws: AirlockError.self) {
                    _ = try await AirlockConnection.connect(socketPath: daemon.socketPath, assertedIdentity: identity)
                }
                #expect(error?.code == code, "\(identity): \(String(describing: error))")
                #expect(error?.message.contains(words) == true, "\(String(describing: error))")
            }
        }
    }
}
