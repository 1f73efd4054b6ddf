import AirlockPosix
import Foundation
import Glibc

/// The Python WinRM clients the gateway tests drive airlock-wsman with.
enum WinRMClient: String, Sendable, CaseIterable, CustomStringConvertible {
    /// pywinrm 0.5.0 (`winrm.Session`, `winrm.protocol.Protocol`).
    case pywinrm
    /// pypsrp 0.9.1 (`pypsrp.client.Client`, `pypsrp.shell.WinRS` / `Process`).
    case pypsrp

    var description: String { rawValue }
}

/// One of the scenario scripts in `Tests/Gateway` (`<client>_scenarios.py`), run by the
/// Python of the venv `deploy/setup-debian.sh` creates.
struct WinRMScript: Sendable {
    var client: WinRMClient

    /// `Tests/Gateway` in this repository.
    static let scriptsDirectory: String = {
        var path = #filePath
        // .../Tests/AirlockIntegrationTests/Gateway/WinRMScript.swift -> .../Tests/Gateway
        for _ in 0..<3 { path = String(path[..<path.lastIndex(of: "/")!]) }
        return path + "/Gateway"
    }()

    var scriptPath: String { Self.scriptsDirectory + "/\(client.rawValue)_scenarios.py" }

    /// The venv's Python: `$AIRLOCK_WSMAN_PYTHON`, else `/var/cache/airlock/wsman-venv/bin/python`
    /// as root, else `${XDG_CACHE_HOME:-$HOME/.cache}/airlock/wsman-venv/bin/python`.
    /// Throws, saying how to create it, when it is missing.
    static func pythonInterpreter() throws -> String {
        let environment = ProcessInfo.processInfo.environment
        let python: String
        if let override = environment["AIRLOCK_WSMAN_PYTHON"], !override.isEmpty {
            python = override
        } else if getuid() == 0 {
            python = "/var/cache/airlock/wsman-venv/bin/python"
        } else {
            let cache = environment["XDG_CACHE_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? ((environment["HOME"] ?? "") + "/.cache")
            python = cache + "/airlock/wsman-venv/bin/python"
        }
        guard access(python, X_OK) == 0 else {
            throw HarnessError(
                "no Python with pywinrm and pypsrp at \(python): run deploy/setup-debian.sh (it creates that venv with pywinrm 0.5.0 and pypsrp 0.9.1 from PyPI), or point AIRLOCK_WSMAN_PYTHON at a Python that has them")
        }
        return python
    }

    /// Runs `scenario` against `url` as `user` (an https URL verified with `caFile`) and
    /// returns the JSON object it printed.
    /// Throws with the script's standard error (its traceback) and the end of the
    /// gateway's log when the script fails or prints something else.
    func run(
        _ scenario: String, url: String, caFile: String? = nil, user: GatewayProcess.User, gateway: GatewayProcess, daemon: Daemon
    ) async throws -> JSONValue {
        let python = try Self.pythonInterpreter()
        let outcome = try await ChildProcess.start(
            python, [scriptPath, scenario, "--url", url, "--user", user.name] + (caFile.map { ["--ca-file", $0] } ?? []),
            environment: [
                "AIRLOCK_WSMAN_PASSWORD": user.password,
                // No __pycache__ in the source tree; no proxy between the client and 127.0.0.1.
                "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1", "PYTHONUTF8": "1",
                "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
            ]
        ).finish()
        let context = "\(client.rawValue) scenario \(scenario) as \(user.name) against \(url)"
        guard outcome.exitCode == 0 else {
            throw HarnessError("""
                \(context): python \(outcome.status)
                --- its standard error:
                \(outcome.stderrText.suffix(6000))
                --- its standard output:
                \(outcome.stdoutText.suffix(2000))
                --- airlock-wsman's log (end):
                \(gateway.logTail)
                --- airlockd's log (end):
                \(daemon.logs.suffix(3000))
                """)
        }
        do {
            let report = try JSONDecoder().decode(JSONValue.self, from: Data(outcome.stdout))
            guard case .object = report else { throw HarnessError("not a JSON object") }
            return report
        } catch {
            throw HarnessError("\(context): its output is not a JSON object (\(error)): \(outcome.stdoutText.prefix(2000))")
        }
    }
}

/// A decoded JSON value, for scenario reports.
enum JSONValue: Sendable, Equatable, Decodable, CustomStringConvertible {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    /// The member `key` of an object (nil otherwise).
    subscript(key: String) -> JSONValue? {
        if case .object(let members) = self { return members[key] }
        return nil
    }

    /// Element `index` of an array (nil otherwise or out of range).
    subscript(index: Int) -> JSONValue? {
        if case .array(let elements) = self, elements.indices.contains(index) { return elements[index] }
        return nil
    }

    var string: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    /// A number that is a whole number.
    var int: Int? {
        if case .number(let value) = self { return Int(exactly: value) }
        return nil
    }

    var bool: Bool? {
        if case .bool(let value) = self { return value }
        return nil
    }

    var array: [JSONValue]? {
        if case .array(let value) = self { return value }
        return nil
    }

    var isNull: Bool { self == .null }

    /// Compact JSON, for failure messages.
    var description: String {
        switch self {
        case .null: "null"
        case .bool(let value): value ? "true" : "false"
        case .number(let value): Int(exactly: value).map(String.init) ?? String(value)
        case .string(let value): Self.quoted(value)
        case .array(let elements): "[" + elements.map(\.description).joined(separator: ", ") + "]"
        case .object(let members): "{" + members.keys.sorted().map { "\(Self.quoted($0)): \(members[$0]!)" }.joined(separator: ", ") + "}"
        }
    }

    private static func quoted(_ text: String) -> String {
        var result = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result += "\\t"
            default:
                if scalar.value < 0x20 { result += String(format: "\\u%04x", scalar.value) } else { result.unicodeScalars.append(scalar) }
            }
        }
        return result + "\""
    }
}
