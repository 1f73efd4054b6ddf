import Foundation
import Glibc
import Testing

/// A fresh folder under /tmp, removed by `remove()`.
struct TemporaryDirectory {
    let path: String

    init() throws {
        var template = Array("/tmp/airlock-auth-test-XXXXXX".utf8CString)
        let created = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        guard let created else { throw TestFailure("mkdtemp: \(String(cString: strerror(errno)))") }
        path = String(cString: created)
    }

    /// Writes `contents` to `name` in this folder with permissions `mode`; returns its path.
    @discardableResult
    func write(_ name: String, _ contents: String, mode: mode_t = 0o600) throws -> String {
        try write(name, Array(contents.utf8), mode: mode)
    }

    @discardableResult
    func write(_ name: String, _ bytes: [UInt8], mode: mode_t = 0o600) throws -> String {
        let file = "\(path)/\(name)"
        try Data(bytes).write(to: URL(fileURLWithPath: file))
        guard chmod(file, mode) == 0 else { throw TestFailure("chmod \(file): \(String(cString: strerror(errno)))") }
        return file
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Runs `executable` with `arguments`, `input` on its standard input; returns its exit status
/// and what it wrote (standard output and error together).
@discardableResult
func run(_ executable: String, _ arguments: [String], input: String? = nil) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let output = Pipe()
    process.standardOutput = output
    process.standardError = output
    let inputPipe = Pipe()
    process.standardInput = inputPipe
    try process.run()
    if let input { inputPipe.fileHandleForWriting.write(Data(input.utf8)) }
    try inputPipe.fileHandleForWriting.close()
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// Runs `executable` and fails unless it exits 0.
func runChecked(_ executable: String, _ arguments: [String], input: String? = nil) throws {
    let (status, output) = try run(executable, arguments, input: input)
    guard status == 0 else {
        throw TestFailure("\(executable) \(arguments.joined(separator: " ")) exited \(status): \(output)")
    }
}

/// A crypt(3) hash of `password` made by another implementation (OpenSSL): `$6$` or `$5$`.
func opensslHash(_ password: String, method: String) throws -> String {
    let (status, output) = try run("/usr/bin/openssl", ["passwd", "-\(method)", "-stdin"], input: password + "\n")
    guard status == 0 else { throw TestFailure("openssl passwd -\(method) exited \(status): \(output)") }
    return output.trimmingCharacters(in: .whitespacesAndNewlines)
}

/// A short random lowercase-hex suffix for names that must not clash between test runs.
func randomSuffix() -> String {
    String(UInt32.random(in: 0 ... .max), radix: 16)
}

/// The `Authorization` header value for `user:password`.
func basicHeader(_ user: String, _ password: String) -> String {
    "Basic " + Data("\(user):\(password)".utf8).base64EncodedString()
}
