import CAirlockPAM
import Synchronization

/// Remembers successful checks for `lifetime` (default 60 s) so a run_cmd's 5 requests cost
/// one PAM/yescrypt check; keeps only a salted derived key of the password, never the
/// password; failures are never cached.
///
/// The derived key is a SHA-256-crypt (`$5$rounds=1000$`) hash with a salt made at random
/// for this cache, so it is cheap to compute (well under a millisecond) yet useless outside
/// this process. A different password for a remembered user is checked by the wrapped
/// authenticator again (the password may have changed); a refusal does not forget the
/// remembered one. At most `maximumEntries` users are remembered; when full, expired entries
/// go first, then the one that expires soonest.
public final class CachingAuthenticator: BasicAuthenticator {
    private struct Entry {
        var derivedKey: [UInt8]
        var authenticatedUser: AuthenticatedUser
        var expiry: ContinuousClock.Instant
    }

    private let wrapped: any BasicAuthenticator
    private let lifetime: Duration
    private let maximumEntries: Int
    /// `$5$rounds=1000$<random salt>`, made once per cache.
    private let setting: String?
    private let entries = Mutex<[String: Entry]>([:])

    /// Caches the successes of `wrapping` for `lifetime` (zero or less: caches nothing),
    /// for at most `maximumEntries` users.
    public init(wrapping: any BasicAuthenticator, lifetime: Duration = .seconds(60), maximumEntries: Int = 10_000) {
        self.wrapped = wrapping
        self.lifetime = lifetime
        self.maximumEntries = max(1, maximumEntries)
        // Without a salt (libcrypt failing), nothing is cached: every check goes through.
        self.setting = try? PasswordHash.newSetting(prefix: "$5$", count: 1000)
    }

    /// How many users are remembered now (expired ones included until they are replaced).
    public var count: Int { entries.withLock { $0.count } }

    public func authenticate(user: String, password: String) -> AuthenticatedUser? {
        guard lifetime > .zero, let setting, user.isAcceptableUserName, password.isAcceptablePassword,
              let key = try? PasswordHash.hash(password, setting: setting) else {
            return wrapped.authenticate(user: user, password: password)
        }
        let derivedKey = Array(key.utf8)
        let now = ContinuousClock.now
        let remembered: AuthenticatedUser? = entries.withLock { entries in
            guard let entry = entries[user] else { return nil }
            guard entry.expiry > now else {
                entries[user] = nil
                return nil
            }
            let equal = entry.derivedKey.count == derivedKey.count && entry.derivedKey.withUnsafeBytes { a in
                derivedKey.withUnsafeBytes { b in airlock_constant_time_equal(a.baseAddress, b.baseAddress, a.count) == 1 }
            }
            return equal ? entry.authenticatedUser : nil
        }
        if let remembered { return remembered }
        guard let authenticated = wrapped.authenticate(user: user, password: password) else { return nil }
        let expiry = ContinuousClock.now.advanced(by: lifetime)
        entries.withLock { entries in
            if entries[user] == nil && entries.count >= maximumEntries {
                let now = ContinuousClock.now
                entries = entries.filter { $0.value.expiry > now }
                if entries.count >= maximumEntries,
                   let soonest = entries.min(by: { $0.value.expiry < $1.value.expiry })?.key {
                    entries[soonest] = nil
                }
            }
            entries[user] = Entry(derivedKey: derivedKey, authenticatedUser: authenticated, expiry: expiry)
        }
        return authenticated
    }

    /// Forgets every remembered check (e.g. after the password file or PAM setup changed).
    public func removeAll() {
        entries.withLock { $0.removeAll() }
    }
}
