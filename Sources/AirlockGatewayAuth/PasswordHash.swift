import CAirlockPAM
import Glibc

/// crypt(3) password hashes (libxcrypt), as in `/etc/shadow` and in airlock-wsman's
/// password file (`airlock-wsman hash-password`).
public enum PasswordHash {
    /// A new crypt(3) hash of `password` (yescrypt, `$y$`), for password files.
    ///
    /// The salt comes from the operating system's random bytes and the cost is libxcrypt's
    /// default for yescrypt. An empty password or one with a NUL byte is refused.
    public static func make(password: String) throws(GatewayAuthError) -> String {
        guard !password.isEmpty else { throw GatewayAuthError("refusing to hash an empty password") }
        guard !password.utf8.contains(0) else { throw GatewayAuthError("a password cannot contain a NUL byte") }
        let setting = try newSetting(prefix: "$y$")
        return try hash(password, setting: setting)
    }

    /// Whether `password` is the one `hash` (a crypt(3) hash such as `$y$...`) was made from.
    /// The comparison takes the same time wherever the hashes differ.
    public static func verify(password: String, hash: String) -> Bool {
        guard !password.utf8.contains(0), !hash.utf8.contains(0) else { return false }
        return airlock_crypt_verify(password, hash) == 1
    }

    /// Reads one password line from `fileDescriptor` (standard input by default): the bytes
    /// up to the first newline or the end, without the newline (and a `\r` before it).
    ///
    /// When `fileDescriptor` is a terminal, echo is switched off while reading and `prompt`
    /// (if any) is written to standard error first. Fails on end of input before any byte,
    /// on a read error, or when the line is not UTF-8.
    public static func readPasswordLine(
        fileDescriptor: Int32 = STDIN_FILENO, prompt: String? = nil
    ) throws(GatewayAuthError) -> String {
        var saved = termios()
        let isTerminal = tcgetattr(fileDescriptor, &saved) == 0
        if isTerminal {
            if let prompt { writeStandardError(prompt) }
            var quiet = saved
            quiet.c_lflag &= ~tcflag_t(ECHO)
            _ = tcsetattr(fileDescriptor, TCSAFLUSH, &quiet)
        }
        defer {
            if isTerminal {
                _ = tcsetattr(fileDescriptor, TCSAFLUSH, &saved)
                writeStandardError("\n")
            }
        }
        var line: [UInt8] = []
        defer { line.withUnsafeMutableBytes { airlock_secure_zero($0.baseAddress, $0.count) } }
        var sawNewline = false
        while true {
            var byte: UInt8 = 0
            let count = read(fileDescriptor, &byte, 1)
            if count < 0 {
                let code = errno
                if code == EINTR { continue }
                throw GatewayAuthError("cannot read the password: \(String(cString: strerror(code)))")
            }
            if count == 0 { break }
            if byte == UInt8(ascii: "\n") { sawNewline = true; break }
            line.append(byte)
            if line.count > 4096 { throw GatewayAuthError("the password line is longer than 4096 bytes") }
        }
        if line.isEmpty && !sawNewline { throw GatewayAuthError("no password on standard input (end of input)") }
        if line.last == UInt8(ascii: "\r") { line.removeLast() }
        guard let password = String(validating: line, as: UTF8.self) else {
            throw GatewayAuthError("the password is not valid UTF-8")
        }
        return password
    }

    // MARK: - crypt(3), for this module

    /// `crypt_gensalt_rn(prefix, count, random)`: a new setting (method, cost, salt).
    static func newSetting(prefix: String, count: UInt = 0) throws(GatewayAuthError) -> String {
        var buffer = [CChar](repeating: 0, count: Int(AIRLOCK_CRYPT_SETTING_CAPACITY))
        guard airlock_crypt_gensalt(prefix, count, &buffer, buffer.count) == 0 else {
            throw GatewayAuthError("crypt_gensalt(\(prefix)) failed: \(String(cString: strerror(errno)))")
        }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// `crypt_rn(phrase, setting)`: the hash of `phrase` with the method, cost and salt of
    /// `setting` (a setting or a whole hash).
    static func hash(_ phrase: String, setting: String) throws(GatewayAuthError) -> String {
        var buffer = [CChar](repeating: 0, count: Int(AIRLOCK_CRYPT_OUTPUT_CAPACITY))
        defer { buffer.withUnsafeMutableBytes { airlock_secure_zero($0.baseAddress, $0.count) } }
        guard airlock_crypt_hash(phrase, setting, &buffer, buffer.count) == 0 else {
            throw GatewayAuthError("crypt() failed: \(String(cString: strerror(errno)))")
        }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private static func writeStandardError(_ text: String) {
        var text = text
        text.withUTF8 { bytes in _ = write(STDERR_FILENO, bytes.baseAddress, bytes.count) }
    }
}
