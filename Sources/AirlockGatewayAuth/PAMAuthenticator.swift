import CAirlockPAM

/// Checks Basic credentials of the system's users through PAM (`isSystemAccount` true).
///
/// Each check runs its own PAM transaction (`pam_start`, `pam_authenticate`,
/// `pam_acct_mgmt`, `pam_end`), so checks may run on several threads at once. The service's
/// configuration is `/etc/pam.d/<service>` (Debian: `deploy/pam.d/airlock-wsman`, which
/// includes common-auth and common-account), or `<configurationDirectory>/<service>`.
/// Blocking: after a wrong password, modules such as pam_unix sleep about two seconds.
public final class PAMAuthenticator: BasicAuthenticator {
    /// The PAM service name (the file in /etc/pam.d).
    public let service: String
    /// The folder holding the service's file instead of /etc/pam.d (`pam_start_confdir`).
    public let configurationDirectory: String?

    /// Authenticates through the PAM service `service`, configured in
    /// `configurationDirectory` when given (Linux-PAM 1.4 or later), else in /etc/pam.d.
    public init(service: String = "airlock-wsman", configurationDirectory: String? = nil) {
        self.service = service
        self.configurationDirectory = configurationDirectory
    }

    public func authenticate(user: String, password: String) -> AuthenticatedUser? {
        check(user: user, password: password).authenticatedUser
    }

    /// Runs one PAM check and says what happened, for logging: which step refused and PAM's
    /// own words. `remoteHost` becomes `PAM_RHOST` (for modules such as pam_access).
    public func check(user: String, password: String, remoteHost: String? = nil) -> PAMCheck {
        guard user.isAcceptableUserName else {
            return PAMCheck(authenticatedUser: nil, step: .input, code: 0, message: "user name refused before PAM")
        }
        guard password.isAcceptablePassword else {
            return PAMCheck(authenticatedUser: nil, step: .input, code: 0, message: "empty password (or one with a NUL byte) refused before PAM")
        }
        if let remoteHost, remoteHost.utf8.contains(0) {
            return PAMCheck(authenticatedUser: nil, step: .input, code: 0, message: "remote host refused before PAM")
        }
        var result = airlock_pam_result()
        let code = withOptionalCString(configurationDirectory) { directory in
            withOptionalCString(remoteHost) { host in
                airlock_pam_authenticate(service, directory, user, password, host, &result)
            }
        }
        let message = withUnsafeBytes(of: &result.message) { String(decodingCString: $0) }
        let step = PAMCheck.Step(stage: result.stage)
        guard code == 0, step == .done else {
            return PAMCheck(authenticatedUser: nil, step: step, code: code, message: message)
        }
        let name = withUnsafeBytes(of: &result.user) { String(decodingCString: $0) }
        return PAMCheck(authenticatedUser: AuthenticatedUser(name: name, isSystemAccount: true),
                        step: step, code: code, message: message)
    }
}

/// The outcome of one PAM check (`PAMAuthenticator.check`).
public struct PAMCheck: Sendable, Hashable, CustomStringConvertible {
    /// The PAM step that decided.
    public enum Step: String, Sendable, Hashable {
        /// Refused before PAM ran (an empty or unusable user name or password).
        case input
        /// `pam_start` (e.g. a missing or unreadable service configuration).
        case start = "pam_start"
        /// `pam_authenticate` (e.g. a wrong password or an unknown user).
        case authenticate = "pam_authenticate"
        /// `pam_acct_mgmt` (e.g. an expired or locked account).
        case account = "pam_acct_mgmt"
        /// `pam_get_item(PAM_USER)` after success.
        case user = "pam_get_item"
        /// Every step succeeded.
        case done

        init(stage: Int32) {
            switch stage {
            case Int32(AIRLOCK_PAM_STAGE_START.rawValue): self = .start
            case Int32(AIRLOCK_PAM_STAGE_AUTHENTICATE.rawValue): self = .authenticate
            case Int32(AIRLOCK_PAM_STAGE_ACCOUNT.rawValue): self = .account
            case Int32(AIRLOCK_PAM_STAGE_USER.rawValue): self = .user
            default: self = .done
            }
        }
    }

    /// Who the credential proved to be; nil when refused.
    public var authenticatedUser: AuthenticatedUser?
    /// The step that decided.
    public var step: Step
    /// The PAM return code of that step (0, PAM_SUCCESS, on success).
    public var code: Int32
    /// `pam_strerror` of `code`, or why the check was refused before PAM.
    public var message: String

    public var description: String {
        if let authenticatedUser { return "PAM accepted \(authenticatedUser.name)" }
        if step == .input { return message }
        return "\(step.rawValue): \(message) (\(code))"
    }
}

private func withOptionalCString<Result>(_ string: String?, _ body: (UnsafePointer<CChar>?) -> Result) -> Result {
    guard let string else { return body(nil) }
    return string.withCString { body($0) }
}

extension String {
    /// A string from a NUL-terminated C string in a fixed-size buffer (up to its first NUL).
    init(decodingCString buffer: UnsafeRawBufferPointer) {
        let bytes = buffer.prefix { $0 != 0 }
        self = String(decoding: bytes, as: UTF8.self)
    }
}
