/// Who a Basic credential proved to be.
public struct AuthenticatedUser: Sendable, Hashable {
    /// The user name to act as: for PAM, `PAM_USER` after authentication (modules may map
    /// the name the client sent); for a password file, the name in the file.
    public var name: String
    /// `true` for a user of the system's user database (PAM); `false` for a gateway-only
    /// user (password file).
    public var isSystemAccount: Bool

    /// A user called `name`, of the system's user database when `isSystemAccount`.
    public init(name: String, isSystemAccount: Bool) {
        self.name = name
        self.isSystemAccount = isSystemAccount
    }
}

/// Checks Basic credentials (a user name and a password).
///
/// Blocking: PAM may sleep for seconds after a failure and a yescrypt hash takes tens of
/// milliseconds, so call `authenticate` from a thread pool, never from an event loop.
public protocol BasicAuthenticator: Sendable {
    /// The user `user` proved to be with `password`, or `nil` when the credential is wrong,
    /// the user is unknown, or the account may not be used.
    func authenticate(user: String, password: String) -> AuthenticatedUser?
}

extension String {
    /// Whether this string can be handed to C as is: no NUL byte (which would cut it short)
    /// and no other control character (never legitimate in a user name).
    var isAcceptableUserName: Bool {
        !isEmpty && utf8.count < 256 && !unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F }
    }

    /// Whether this string is a password that can be checked: not empty, no NUL byte.
    var isAcceptablePassword: Bool {
        !isEmpty && !utf8.contains(0)
    }
}
