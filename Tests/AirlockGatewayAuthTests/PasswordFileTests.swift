import AirlockGatewayAuth
import Foundation
import Glibc
import Testing

@Suite("Password file")
struct PasswordFileTests {
    @Test("users with yescrypt, SHA-512 and SHA-256 hashes; comments, blank lines, CRLF and blanks ignored")
    func goodFile() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let alice = try PasswordHash.make(password: "alice-pw")
        let bob = try opensslHash("bob:pw with spaces", method: "6")
        let carol = try opensslHash("carol-pw", method: "5")
        let file = try directory.write("users", """
            # gateway users
            alice:\(alice)

               # indented comment
            bob:\(bob)\r
              carol : \(carol)\t
            """)
        let authenticator = try PasswordFileAuthenticator(path: file)
        #expect(authenticator.userNames == ["alice", "bob", "carol"])
        #expect(authenticator.authenticate(user: "alice", password: "alice-pw") == AuthenticatedUser(name: "alice", isSystemAccount: false))
        #expect(authenticator.authenticate(user: "bob", password: "bob:pw with spaces") == AuthenticatedUser(name: "bob", isSystemAccount: false))
        #expect(authenticator.authenticate(user: "carol", password: "carol-pw")?.name == "carol")
        #expect(authenticator.authenticate(user: "alice", password: "alice-pW") == nil)
        #expect(authenticator.authenticate(user: "alice", password: "bob:pw with spaces") == nil)
        #expect(authenticator.authenticate(user: "alice", password: "") == nil)
        #expect(authenticator.authenticate(user: "alice", password: "alice-pw\u{0}") == nil)
        #expect(authenticator.authenticate(user: "Alice", password: "alice-pw") == nil)
        #expect(authenticator.authenticate(user: "mallory", password: "alice-pw") == nil)
        #expect(authenticator.authenticate(user: "", password: "alice-pw") == nil)
    }

    @Test("an empty file (only comments) is valid and refuses everyone")
    func emptyFile() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let file = try directory.write("users", "# nobody yet\n\n")
        let authenticator = try PasswordFileAuthenticator(path: file)
        #expect(authenticator.userNames.isEmpty)
        #expect(authenticator.authenticate(user: "alice", password: "alice-pw") == nil)
    }

    /// A bad line and what the error must say about it (besides `file:line:`).
    struct BadLine: Sendable, CustomTestStringConvertible {
        var line: String
        var reason: String
        var testDescription: String { reason }
    }

    static let yescrypt = "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$X3DX6M94c7o.9agCG9G317fhZg9SqC.5i5rd.RhAtQ7"

    @Test("a bad line is an error naming the file, the line number and what is wrong", arguments: [
        BadLine(line: "alice", reason: "missing ':'"),
        BadLine(line: "alice \(yescrypt)", reason: "missing ':'"),
        BadLine(line: ":\(yescrypt)", reason: "empty user name"),
        BadLine(line: "  :\(yescrypt)", reason: "empty user name"),
        BadLine(line: "alice:", reason: "empty hash for user alice"),
        BadLine(line: "al ice:\(yescrypt)", reason: "contains a blank or control character"),
        BadLine(line: "alice:secret", reason: "is not a supported crypt(3) hash"),
        BadLine(line: "alice:!", reason: "is not a supported crypt(3) hash"),
        BadLine(line: "alice:*", reason: "is not a supported crypt(3) hash"),
        BadLine(line: "alice:$1$saltsalt$qjXMvbEw8oaL.CzflDugX/", reason: "uses a legacy method ($1$) that is not accepted"),
        BadLine(line: "alice:$sha1$40000$salt$hash", reason: "uses a legacy method ($sha1$) that is not accepted"),
        BadLine(line: "alice:abJnggxhB/yWI", reason: "is not a supported crypt(3) hash (a password in clear, or traditional DES?)"),
        BadLine(line: "alice:\(yescrypt):19000:0:99999:7:::", reason: "more than one ':'"),
        BadLine(line: "alice:$y$j9T$F5Jx5f ExrKuPp53xLKQ", reason: "contains a blank"),
    ])
    func badLine(bad: BadLine) throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let good = try PasswordHash.make(password: "x")
        let file = try directory.write("users", "# header\nbob:\(good)\n\n\(bad.line)\ncarol:\(good)\n")
        let error = #expect(throws: GatewayAuthError.self) { try PasswordFileAuthenticator(path: file) }
        #expect(error?.description.hasPrefix("\(file):4: ") == true, "\(error?.description ?? "")")
        #expect(error?.description.contains(bad.reason) == true, "\(error?.description ?? "")")
    }

    @Test("a duplicate user is an error naming both lines")
    func duplicateUser() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let hash = try PasswordHash.make(password: "x")
        let file = try directory.write("users", "alice:\(hash)\nbob:\(hash)\n# again\nalice:\(hash)\n")
        let error = #expect(throws: GatewayAuthError.self) { try PasswordFileAuthenticator(path: file) }
        #expect(error?.description == "\(file):4: duplicate user alice (first on line 1)")
    }

    @Test("a line that is not UTF-8 is an error naming its line")
    func notUTF8() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let hash = try PasswordHash.make(password: "x")
        let file = try directory.write("users", Array("bob:\(hash)\nal".utf8) + [0xFF] + Array("ice:\(hash)\n".utf8))
        let error = #expect(throws: GatewayAuthError.self) { try PasswordFileAuthenticator(path: file) }
        #expect(error?.description == "\(file):2: not valid UTF-8")
    }

    @Test("a world-writable file is refused, with the fix")
    func worldWritable() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let hash = try PasswordHash.make(password: "x")
        let file = try directory.write("users", "alice:\(hash)\n", mode: 0o666)
        let error = #expect(throws: GatewayAuthError.self) { try PasswordFileAuthenticator(path: file) }
        #expect(error?.description.contains("\(file) is writable by every user (mode 0666)") == true, "\(error?.description ?? "")")
        #expect(error?.description.contains("chmod o-w") == true)
        // Group-writable and world-readable are the operator's choice.
        #expect(chmod(file, 0o664) == 0)
        #expect(try PasswordFileAuthenticator(path: file).userNames == ["alice"])
    }

    @Test("a missing file and a folder are refused, naming the path")
    func notAFile() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let missing = #expect(throws: GatewayAuthError.self) { try PasswordFileAuthenticator(path: "\(directory.path)/none") }
        #expect(missing?.description == "cannot open the password file \(directory.path)/none: No such file or directory")
        let folder = #expect(throws: GatewayAuthError.self) { try PasswordFileAuthenticator(path: directory.path) }
        #expect(folder?.description == "the password file \(directory.path) is not a regular file")
    }
}

@Suite("Password hashes")
struct PasswordHashTests {
    @Test("a new hash is yescrypt, verifies its password and refuses others")
    func roundTrip() throws {
        let hash = try PasswordHash.make(password: "correct horse: battery staple")
        #expect(hash.hasPrefix("$y$"))
        #expect(PasswordHash.verify(password: "correct horse: battery staple", hash: hash))
        #expect(!PasswordHash.verify(password: "correct horse: battery stapl", hash: hash))
        #expect(!PasswordHash.verify(password: "", hash: hash))
        #expect(!PasswordHash.verify(password: "correct horse: battery staple", hash: "not a hash"))
        // A new salt each time.
        #expect(try PasswordHash.make(password: "same") != PasswordHash.make(password: "same"))
        // Non-ASCII passwords hash their UTF-8 bytes.
        let unicode = try PasswordHash.make(password: "pässwört€")
        #expect(PasswordHash.verify(password: "pässwört€", hash: unicode))
        #expect(!PasswordHash.verify(password: "passwort€", hash: unicode))
    }

    @Test("SHA-512 hashes made by OpenSSL verify")
    func interoperates() throws {
        let sha512 = try opensslHash("interop", method: "6")
        #expect(PasswordHash.verify(password: "interop", hash: sha512))
        #expect(!PasswordHash.verify(password: "interoP", hash: sha512))
    }

    @Test("an empty password or one with a NUL byte is not hashed")
    func refused() {
        #expect(throws: GatewayAuthError.self) { try PasswordHash.make(password: "") }
        #expect(throws: GatewayAuthError.self) { try PasswordHash.make(password: "a\u{0}b") }
    }

    @Test("the password line is read up to the newline, without a CR; end of input without a line is an error")
    func readLine() throws {
        func read(_ input: [UInt8]) throws -> String {
            var fds: [Int32] = [0, 0]
            #expect(pipe(&fds) == 0)
            defer { close(fds[0]) }
            _ = input.withUnsafeBytes { write(fds[1], $0.baseAddress, $0.count) }
            close(fds[1])
            return try PasswordHash.readPasswordLine(fileDescriptor: fds[0])
        }
        #expect(try read(Array("s3cret: with blanks \n".utf8)) == "s3cret: with blanks ")
        #expect(try read(Array("crlf\r\nsecond line\n".utf8)) == "crlf")
        #expect(try read(Array("no newline".utf8)) == "no newline")
        #expect(try read(Array("pässwört\n".utf8)) == "pässwört")
        #expect(try read(Array("\n".utf8)) == "")
        let eof = #expect(throws: GatewayAuthError.self) { try read([]) }
        #expect(eof?.description.contains("no password") == true)
        #expect(throws: GatewayAuthError.self) { try read([0xFF, 0x0A]) }
    }
}
