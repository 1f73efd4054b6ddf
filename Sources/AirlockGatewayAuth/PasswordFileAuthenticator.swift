import CAirlockPAM
import Glibc

/// Checks Basic credentials against a password file of gateway-only users
/// (`isSystemAccount` false).
///
/// The file holds one `user:HASH` per line, HASH a crypt(3) hash as in `/etc/shadow`
/// (`$y$` yescrypt, `$gy$`, `$7$`, `$2b$`, `$6$`, `$5$`; `airlock-wsman hash-password`
/// makes one). Blank lines and lines starting with `#` are ignored. The whole file is
/// read and validated once, by `init`; a file that changes needs a new authenticator.
public final class PasswordFileAuthenticator: BasicAuthenticator {
    /// The largest password file accepted (16 MiB).
    static let maximumFileSize = 16 << 20

    /// The file this authenticator was read from.
    public let path: String
    private let hashes: [String: String]
    /// What an unknown user's password is hashed with, so that a wrong user name takes as
    /// long as a wrong password: the first user's hash (same method and cost as the real
    /// ones), or a fresh yescrypt setting when the file has no users.
    private let decoyHash: String

    /// The users of the password file at `path`. Reads and validates the whole file: it must
    /// be a regular file, not writable by every user, and every line well formed; otherwise
    /// the error names the file (and line) and what is wrong.
    public init(path: String) throws(GatewayAuthError) {
        self.path = path
        let contents = try Self.readFile(path)
        let entries = try Self.parse(contents, path: path)
        var hashes: [String: String] = [:]
        for entry in entries { hashes[entry.user] = entry.hash }
        self.hashes = hashes
        if let first = entries.first {
            self.decoyHash = first.hash
        } else {
            self.decoyHash = try PasswordHash.newSetting(prefix: "$y$")
        }
    }

    /// The names of the users in the file, sorted.
    public var userNames: [String] { hashes.keys.sorted() }

    public func authenticate(user: String, password: String) -> AuthenticatedUser? {
        guard user.isAcceptableUserName, password.isAcceptablePassword else { return nil }
        guard let hash = hashes[user] else {
            // Spend the same work as for a known user, then refuse.
            _ = PasswordHash.verify(password: password, hash: decoyHash)
            return nil
        }
        return PasswordHash.verify(password: password, hash: hash)
            ? AuthenticatedUser(name: user, isSystemAccount: false) : nil
    }

    // MARK: - Reading and parsing

    struct Entry: Equatable {
        var user: String
        var hash: String
        var line: Int
    }

    static func readFile(_ path: String) throws(GatewayAuthError) -> [UInt8] {
        var descriptor: Int32
        repeat { descriptor = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK) } while descriptor < 0 && errno == EINTR
        guard descriptor >= 0 else {
            throw GatewayAuthError("cannot open the password file \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else {
            throw GatewayAuthError("cannot stat the password file \(path): \(String(cString: strerror(errno)))")
        }
        guard status.st_mode & S_IFMT == S_IFREG else {
            throw GatewayAuthError("the password file \(path) is not a regular file")
        }
        guard status.st_mode & S_IWOTH == 0 else {
            let mode = String(status.st_mode & 0o7777, radix: 8)
            throw GatewayAuthError(
                "the password file \(path) is writable by every user (mode 0\(mode)); anyone could add a user: run chmod o-w \(path)")
        }
        guard Int(status.st_size) <= maximumFileSize else {
            throw GatewayAuthError("the password file \(path) is larger than \(maximumFileSize) bytes")
        }
        var contents: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw GatewayAuthError("cannot read the password file \(path): \(String(cString: strerror(errno)))")
            }
            if count == 0 { break }
            contents.append(contentsOf: buffer[..<count])
            guard contents.count <= maximumFileSize else {
                throw GatewayAuthError("the password file \(path) is larger than \(maximumFileSize) bytes")
            }
        }
        return contents
    }

    /// The entries of a password file's `contents`; throws for the first bad line, naming
    /// `path`, the line number (from 1) and what is wrong.
    static func parse(_ contents: [UInt8], path: String) throws(GatewayAuthError) -> [Entry] {
        var entries: [Entry] = []
        var lineOfUser: [String: Int] = [:]
        var lineNumber = 0
        for rawLine in contents.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            lineNumber += 1
            func failure(_ reason: String) -> GatewayAuthError {
                GatewayAuthError("\(path):\(lineNumber): \(reason)")
            }
            guard let text = String(validating: rawLine, as: UTF8.self) else { throw failure("not valid UTF-8") }
            let line = text.trimmingBlanks()
            if line.isEmpty || line.hasPrefix("#") { continue }
            guard let colon = line.firstIndex(of: ":") else {
                throw failure("missing ':' between user and hash (expected user:HASH)")
            }
            let user = String(line[..<colon]).trimmingBlanks()
            let hash = String(line[line.index(after: colon)...]).trimmingBlanks()
            guard !user.isEmpty else { throw failure("empty user name (expected user:HASH)") }
            guard user.isAcceptableUserName, !user.contains(where: { $0 == " " || $0 == "\t" }) else {
                throw failure("user name \"\(user)\" contains a blank or control character, or is longer than 255 bytes")
            }
            guard !hash.isEmpty else { throw failure("empty hash for user \(user) (make one with `airlock-wsman hash-password`)") }
            guard !hash.contains(":") else {
                throw failure("more than one ':' (expected user:HASH; an /etc/shadow line must be cut after the hash)")
            }
            guard !hash.contains(where: { $0 == " " || $0 == "\t" }) else {
                throw failure("the hash for user \(user) contains a blank")
            }
            let supported = "supported: $y$, $gy$, $7$, $2b$, $6$, $5$; make one with `airlock-wsman hash-password`"
            switch airlock_crypt_checksalt(hash) {
            case Int32(AIRLOCK_CRYPT_SALT_OK.rawValue):
                break
            case Int32(AIRLOCK_CRYPT_SALT_METHOD_LEGACY.rawValue) where hash.hasPrefix("$5$"):
                // SHA-256-crypt: libxcrypt calls it legacy, but it is unbroken and what
                // /etc/shadow holds under ENCRYPT_METHOD SHA256, so it is accepted.
                break
            case Int32(AIRLOCK_CRYPT_SALT_METHOD_LEGACY.rawValue) where hash.hasPrefix("$"):
                let prefix = "$" + hash.dropFirst().prefix { $0 != "$" } + "$"
                throw failure("the hash for user \(user) uses a legacy method (\(prefix)) that is not accepted (\(supported))")
            case Int32(AIRLOCK_CRYPT_SALT_METHOD_DISABLED.rawValue):
                throw failure("the hash for user \(user) uses a method this system's libcrypt has disabled (\(supported))")
            case Int32(AIRLOCK_CRYPT_SALT_TOO_CHEAP.rawValue):
                throw failure("the hash for user \(user) is too cheap to compute (\(supported))")
            default:
                // Invalid, or legacy without a "$" prefix: traditional DES, or a password in clear.
                throw failure("the hash for user \(user) is not a supported crypt(3) hash (a password in clear, or traditional DES?) (\(supported))")
            }
            if let previous = lineOfUser[user] {
                throw failure("duplicate user \(user) (first on line \(previous))")
            }
            lineOfUser[user] = lineNumber
            entries.append(Entry(user: user, hash: hash, line: lineNumber))
        }
        return entries
    }
}

extension String {
    /// This string without leading and trailing spaces, tabs and carriage returns.
    func trimmingBlanks() -> String {
        let isBlank: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\r" }
        guard let first = firstIndex(where: { !isBlank($0) }), let last = lastIndex(where: { !isBlank($0) }) else {
            return ""
        }
        return String(self[first...last])
    }
}
