import AirlockGatewayAuth
import Dispatch
import Glibc
import Synchronization
import Testing

/// A system user made for one test (`useradd`, no home, no login shell), with a password;
/// `remove()` deletes it (`userdel`).
struct TemporarySystemUser {
    let name: String

    init(password: String) throws {
        name = "airlock-t-\(randomSuffix())"
        try runChecked("/usr/sbin/useradd", ["-M", "-s", "/usr/sbin/nologin", "-c", "AirlockGatewayAuthTests", name])
        do {
            try runChecked("/usr/sbin/chpasswd", [], input: "\(name):\(password)\n")
        } catch {
            remove()
            throw error
        }
    }

    func remove() {
        _ = try? run("/usr/sbin/userdel", ["-f", name])
    }
}

/// Real PAM: `pam_start_confdir` with a service file in a temporary folder that uses
/// pam_unix (the module Debian's common-auth and common-account use) against a temporary
/// system user. Needs root (to create users and for pam_unix to read /etc/shadow).
@Suite("PAM authenticator", .serialized, .enabled(if: getuid() == 0, "needs root: creates system users"))
struct PAMAuthenticatorTests {
    /// A PAM configuration folder with service `airlock-wsman-test` (pam_unix; `nodelay` so
    /// a refusal does not sleep two seconds).
    static func configuration() throws -> TemporaryDirectory {
        let directory = try TemporaryDirectory()
        try directory.write("airlock-wsman-test", """
            auth     required pam_unix.so nodelay
            account  required pam_unix.so
            """, mode: 0o644)
        return directory
    }

    @Test("the right password is accepted as a system account; wrong, empty and unknown are refused")
    func passwords() throws {
        let configuration = try Self.configuration()
        defer { configuration.remove() }
        let user = try TemporarySystemUser(password: "Right pässword: 1")
        defer { user.remove() }
        let pam = PAMAuthenticator(service: "airlock-wsman-test", configurationDirectory: configuration.path)

        let accepted = pam.check(user: user.name, password: "Right pässword: 1")
        #expect(accepted.authenticatedUser == AuthenticatedUser(name: user.name, isSystemAccount: true), "\(accepted)")
        #expect(accepted.step == .done)
        #expect(pam.authenticate(user: user.name, password: "Right pässword: 1")?.name == user.name)

        let wrong = pam.check(user: user.name, password: "Right pässword: 2")
        #expect(wrong.authenticatedUser == nil)
        #expect(wrong.step == .authenticate, "\(wrong)")
        #expect(wrong.message == "Authentication failure")

        let unknown = pam.check(user: "airlock-t-nobody-\(randomSuffix())", password: "Right pässword: 1")
        #expect(unknown.authenticatedUser == nil)
        #expect(unknown.step == .authenticate, "\(unknown)")

        let empty = pam.check(user: user.name, password: "")
        #expect(empty.authenticatedUser == nil)
        #expect(empty.step == .input)
        #expect(pam.authenticate(user: "", password: "Right pässword: 1") == nil)
        #expect(pam.authenticate(user: user.name + "\n", password: "Right pässword: 1") == nil)
    }

    @Test("pam_acct_mgmt runs: an expired account is refused even with the right password")
    func expiredAccount() throws {
        let configuration = try Self.configuration()
        defer { configuration.remove() }
        let user = try TemporarySystemUser(password: "pw-expired")
        defer { user.remove() }
        let pam = PAMAuthenticator(service: "airlock-wsman-test", configurationDirectory: configuration.path)
        #expect(pam.authenticate(user: user.name, password: "pw-expired") != nil)
        try runChecked("/usr/bin/chage", ["-E", "0", user.name])
        let expired = pam.check(user: user.name, password: "pw-expired")
        #expect(expired.authenticatedUser == nil)
        #expect(expired.step == .account, "\(expired)")
        #expect(expired.message == "User account has expired")
    }

    @Test("a service PAM denies refuses everyone")
    func denyingService() throws {
        let configuration = try TemporaryDirectory()
        defer { configuration.remove() }
        try configuration.write("airlock-wsman-deny", "auth required pam_deny.so\naccount required pam_deny.so\n", mode: 0o644)
        let pam = PAMAuthenticator(service: "airlock-wsman-deny", configurationDirectory: configuration.path)
        let refused = pam.check(user: "root", password: "anything")
        #expect(refused.authenticatedUser == nil)
        #expect(refused.step == .authenticate, "\(refused)")
    }

    @Test("checks on several threads at once each get their own answer")
    func concurrent() throws {
        let configuration = try Self.configuration()
        defer { configuration.remove() }
        let user = try TemporarySystemUser(password: "pw-concurrent")
        defer { user.remove() }
        let pam = PAMAuthenticator(service: "airlock-wsman-test", configurationDirectory: configuration.path)
        let outcomes = Mutex<[Int: Bool]>([:])
        DispatchQueue.concurrentPerform(iterations: 16) { index in
            let right = index % 2 == 0
            let accepted = pam.authenticate(user: user.name, password: right ? "pw-concurrent" : "pw-\(index)") != nil
            outcomes.withLock { $0[index] = accepted }
        }
        let results = outcomes.withLock { $0 }
        for index in 0..<16 { #expect(results[index] == (index % 2 == 0), "check \(index)") }
    }

    @Test("cached PAM: the system user's five requests cost one PAM check")
    func cached() throws {
        let configuration = try Self.configuration()
        defer { configuration.remove() }
        let user = try TemporarySystemUser(password: "pw-cached")
        defer { user.remove() }
        let counter = CountingAuthenticator(PAMAuthenticator(service: "airlock-wsman-test", configurationDirectory: configuration.path))
        let cache = CachingAuthenticator(wrapping: counter)
        for _ in 0..<5 { #expect(cache.authenticate(user: user.name, password: "pw-cached")?.isSystemAccount == true) }
        #expect(cache.authenticate(user: user.name, password: "pw-wrong") == nil)
        #expect(counter.count == 2)
    }
}
