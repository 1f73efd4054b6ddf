/// A failure of AirlockGatewayAuth: a password file that cannot be used, or crypt(3) refusing
/// to make a hash. `description` is a complete sentence meant for the operator: it names the
/// file and line, or the call, and says what is wrong.
public struct GatewayAuthError: Error, Sendable, CustomStringConvertible {
    /// What went wrong, for the operator (e.g. `/etc/airlock/users:3: missing ':' ...`).
    public var description: String

    /// An error whose description is `description`.
    public init(_ description: String) {
        self.description = description
    }
}
