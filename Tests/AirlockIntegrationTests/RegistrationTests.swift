import AirlockClient
import AirlockPosix
import AirlockProtocol
import Foundation
import Glibc
import Testing

/// Bad registrations get clear errors and cost nothing else: a plug-in missing a
/// mandatory export, a library that does not exist, a configuration that is wrong.
@Suite("Plug-in registration")
struct RegistrationTests {
    @Test("A plug-in missing mandatory exports is refused with an error naming them; others carry on")
    func missingExport() async throws {
        let plugins = ["echo": Daemon.pluginPath("echo"), "broken": Daemon.testPluginPath("noexport")]
        try await Daemon.with(plugins: plugins) { daemon in
            let connection = try await daemon.connect()
            defer { connection.close() }
            do {
                _ = try await connection.createShell(plugin: "broken")
                Issue.record("a plug-in without WSManPluginShell must not create shells")
            } catch let error as AirlockError {
                #expect(error.code == WSManError.providerLoadFailed, "got \(error)")
                #expect(error.message.contains("WSManPluginShell"), "the message should name the missing export: \(error.message)")
                #expect(error.message.contains("libairlock-test-noexport.so"), "the message should name the library: \(error.message)")
            }
            let shell = try await connection.createShell(plugin: "echo")
            let output = try await shell.run("unaffected").collectOutput()
            #expect(String(decoding: output.stdout, as: UTF8.self) == "unaffected\n")
            let run = try await daemon.airlockctl(["run", "--plugin", "broken", "--", "x"])
            #expect(run.exitCode == 125)
            #expect(run.stderrText.contains("ERROR_WSMAN_PROVIDER_LOAD_FAILED"), "stderr: \(run.stderrText)")
        }
    }

    @Test("A library path that does not exist gives ERROR_WSMAN_FILE_NOT_PRESENT naming the path")
    func missingLibrary() async throws {
        let missing = "/nonexistent/airlock/libgone.so"
        try await Daemon.with(plugins: ["gone": missing, "echo": Daemon.pluginPath("echo")]) { daemon in
            let connection = try await daemon.connect()
            defer { connection.close() }
            do {
                _ = try await connection.createShell(plugin: "gone")
                Issue.record("a missing library must not create shells")
            } catch let error as AirlockError {
                #expect(error.code == WSManError.fileNotPresent, "got \(error)")
                #expect(error.message.contains(missing), "the message should name the path: \(error.message)")
            }
            _ = try await connection.createShell(plugin: "echo")
        }
    }

    @Test("airlockd refuses a bad configuration at start, naming the file and the problem", arguments: [
        ("{ \"Plugins\": [ { \"Name\": \"x\", \"Filename\": \"/x.so\", \"Colour\": \"blue\" } ] }", "Colour"),
        ("{ \"Plugins\": [ { \"Name\": \"x\" } ] }", "Filename"),
        ("{ \"Plugins\": [ { \"Name\": \"x\", \"Filename\": \"relative.so\" } ] }", "absolute"),
        ("{ \"SocketMode\": \"rw\" }", "SocketMode"),
        ("{ \"MaxResultRingkb\": 32 }", "MaxResultRingkb 32 must be 0 (no result rings) or between 64"),
        ("{ not json", "invalid"),
    ])
    func badConfiguration(text: String, expected: String) throws {
        var template = Array("/tmp/airlock-cfg-XXXXXX".utf8CString)
        let directory = try #require(template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }.map { String(cString: $0) })
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/airlockd.json"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Daemon.executablePath("airlockd"))
        process.arguments = ["--config", path, "--socket", directory + "/s.sock", "--state-directory", directory + "/state"]
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let data = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let message = String(decoding: data, as: UTF8.self)
        #expect(process.terminationStatus != 0, "airlockd must refuse to start")
        #expect(message.contains(expected), "the error should mention \(expected): \(message)")
        #expect(access(directory + "/s.sock", F_OK) != 0, "nothing may listen with a bad configuration")
    }
}
