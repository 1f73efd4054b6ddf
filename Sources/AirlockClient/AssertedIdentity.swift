import AirlockProtocol

/// An identity a trusted gateway asserts for a user it authenticated itself
/// (`ASSERT_IDENTITY`, PROTOCOL.md §5.2).
///
/// A gateway such as `airlock-wsman` checks HTTP Basic credentials, then opens one
/// connection per user with ``AirlockConnection/connect(socketPath:clientName:assertedIdentity:)``.
/// Everything done on that connection acts for the user: `airlockd` applies its access
/// lists, quotas and shell ownership to it, and the plug-in sees `userName`,
/// `authenticationMechanism` and `httpURL` in `WSMAN_SENDER_DETAILS`. `airlockd` accepts
/// the assertion only from a peer listed in its `TrustedGateways` configuration.
public struct AssertedIdentity: Sendable, Hashable {
    /// The user's name, e.g. `alice`.
    public var userName: String
    /// How the gateway authenticated the user, e.g. `Basic`.
    public var authenticationMechanism: String
    /// The URL the user's client addressed, e.g. `http://127.0.0.1:5985/wsman`; may be empty.
    public var httpURL: String
    /// True for an account of the system's user database (the gateway checked it through
    /// PAM, say): it is the same user as a local client of that uid. False for a user known
    /// only to the gateway (a password file); access lists name it `gateway:<name>`.
    public var isSystemAccount: Bool

    /// Creates an identity to assert.
    public init(userName: String, authenticationMechanism: String, httpURL: String, isSystemAccount: Bool) {
        self.userName = userName
        self.authenticationMechanism = authenticationMechanism
        self.httpURL = httpURL
        self.isSystemAccount = isSystemAccount
    }

    var message: AssertIdentity {
        AssertIdentity(userName: userName, authenticationMechanism: authenticationMechanism, httpURL: httpURL,
                       flags: isSystemAccount ? AssertIdentity.systemAccount : 0)
    }
}
