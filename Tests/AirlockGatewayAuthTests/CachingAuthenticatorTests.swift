import AirlockGatewayAuth
import Synchronization
import Testing

/// A real authenticator (a password file) that counts how often it is asked.
final class CountingAuthenticator: BasicAuthenticator {
    let inner: any BasicAuthenticator
    private let calls = Atomic<Int>(0)
    init(_ inner: any BasicAuthenticator) { self.inner = inner }
    var count: Int { calls.load(ordering: .relaxed) }
    func authenticate(user: String, password: String) -> AuthenticatedUser? {
        calls.add(1, ordering: .relaxed)
        return inner.authenticate(user: user, password: password)
    }
}

@Suite("Caching authenticator")
struct CachingAuthenticatorTests {
    /// A password file with users u0...u(count-1), password "pw-<n>", and a counter around it.
    static func counting(users: Int = 3) throws -> (CountingAuthenticator, TemporaryDirectory) {
        let directory = try TemporaryDirectory()
        var lines = ""
        for n in 0..<users {
            lines += "u\(n):\(try PasswordHash.make(password: "pw-\(n)"))\n"
        }
        let file = try directory.write("users", lines)
        return (CountingAuthenticator(try PasswordFileAuthenticator(path: file)), directory)
    }

    @Test("five requests of one user cost one check")
    func successIsCached() throws {
        let (counter, directory) = try Self.counting()
        defer { directory.remove() }
        let cache = CachingAuthenticator(wrapping: counter)
        for _ in 0..<5 {
            #expect(cache.authenticate(user: "u0", password: "pw-0") == AuthenticatedUser(name: "u0", isSystemAccount: false))
        }
        #expect(counter.count == 1)
        #expect(cache.count == 1)
        #expect(cache.authenticate(user: "u1", password: "pw-1")?.name == "u1")
        #expect(counter.count == 2)
    }

    @Test("failures are never cached; a wrong password does not pass on a cached user, nor evict it")
    func failuresAreNotCached() throws {
        let (counter, directory) = try Self.counting()
        defer { directory.remove() }
        let cache = CachingAuthenticator(wrapping: counter)
        for _ in 0..<3 { #expect(cache.authenticate(user: "u0", password: "wrong") == nil) }
        #expect(counter.count == 3)
        #expect(cache.count == 0)
        #expect(cache.authenticate(user: "u0", password: "pw-0") != nil)
        #expect(counter.count == 4)
        // Another user's password, or a near miss, goes to the wrapped authenticator and fails.
        #expect(cache.authenticate(user: "u0", password: "pw-1") == nil)
        #expect(cache.authenticate(user: "u0", password: "pw-0 ") == nil)
        #expect(counter.count == 6)
        #expect(cache.authenticate(user: "u0", password: "pw-0") != nil)
        #expect(counter.count == 6)
        // Unknown users and empty passwords are never remembered.
        #expect(cache.authenticate(user: "nobody", password: "pw-0") == nil)
        #expect(cache.authenticate(user: "u1", password: "") == nil)
        #expect(cache.count == 1)
    }

    @Test("a zero lifetime caches nothing")
    func zeroLifetime() throws {
        let (counter, directory) = try Self.counting()
        defer { directory.remove() }
        let cache = CachingAuthenticator(wrapping: counter, lifetime: .zero)
        for _ in 0..<3 { #expect(cache.authenticate(user: "u0", password: "pw-0") != nil) }
        #expect(counter.count == 3)
        #expect(cache.count == 0)
    }

    @Test("an expired entry is checked again")
    func expiry() async throws {
        let (counter, directory) = try Self.counting()
        defer { directory.remove() }
        let cache = CachingAuthenticator(wrapping: counter, lifetime: .milliseconds(1))
        #expect(cache.authenticate(user: "u0", password: "pw-0") != nil)
        try await Task.sleep(for: .milliseconds(20))
        #expect(cache.authenticate(user: "u0", password: "pw-0") != nil)
        #expect(counter.count == 2)
    }

    @Test("at most maximumEntries users are remembered")
    func bounded() throws {
        let (counter, directory) = try Self.counting(users: 4)
        defer { directory.remove() }
        let cache = CachingAuthenticator(wrapping: counter, maximumEntries: 2)
        for n in 0..<4 { #expect(cache.authenticate(user: "u\(n)", password: "pw-\(n)") != nil) }
        #expect(counter.count == 4)
        #expect(cache.count == 2)
        // The last user is still remembered; the first was evicted and is checked again.
        #expect(cache.authenticate(user: "u3", password: "pw-3") != nil)
        #expect(counter.count == 4)
        #expect(cache.authenticate(user: "u0", password: "pw-0") != nil)
        #expect(counter.count == 5)
        #expect(cache.count == 2)
        cache.removeAll()
        #expect(cache.count == 0)
    }
}
