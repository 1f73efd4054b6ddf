import AirlockGateway
import AirlockGatewayAuth
import AirlockLogging
import ArgumentParser
import Glibc
import Logging

/// `airlock-wsman`: the WS-Management gateway that lets WinRM clients reach Airlock's plug-ins.
@main
struct AirlockWSMan: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "airlock-wsman",
        abstract: "A WS-Management (WinRM) gateway in front of airlockd: pywinrm and pypsrp reach Airlock's plug-ins.",
        discussion: """
            Serves POST /wsman over HTTP (default 127.0.0.1:5985) and HTTPS, checks HTTP Basic credentials \
            (PAM or a password file) and talks to airlockd over its socket, asserting each user's identity \
            (airlockd must list this process's user in TrustedGateways).
            """,
        subcommands: [Serve.self, HashPassword.self],
        defaultSubcommand: Serve.self)
}

/// The gateway itself (the default subcommand).
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "serve", abstract: "Run the gateway (the default).")

    @Option(name: .customLong("listen"), help: ArgumentHelp("Listen for HTTP (repeatable; default 127.0.0.1:5985).", valueName: "HOST:PORT"))
    var listen: [String] = []

    @Option(name: .customLong("listen-https"), help: ArgumentHelp("Listen for HTTPS (repeatable; needs --certificate and --private-key).", valueName: "HOST:PORT"))
    var listenHTTPS: [String] = []

    @Option(help: ArgumentHelp("The HTTPS certificate chain (PEM).", valueName: "PEM"))
    var certificate: String?

    @Option(name: .customLong("private-key"), help: ArgumentHelp("The HTTPS private key (PEM).", valueName: "PEM"))
    var privateKey: String?

    @Option(help: "airlockd's socket (default: AirlockClient's default socket path).")
    var socket: String?

    @Option(help: ArgumentHelp("How Basic credentials are checked: file or pam.", valueName: "file|pam"))
    var auth: String = "pam"

    @Option(name: .customLong("password-file"), help: ArgumentHelp("user:HASH lines (crypt(3) hashes); required with --auth file.", valueName: "PATH"))
    var passwordFile: String?

    @Option(name: .customLong("pam-service"), help: "The PAM service name.")
    var pamService: String = "airlock-wsman"

    @Option(name: .customLong("max-envelope-size"), help: "The largest SOAP envelope answered, in bytes.")
    var maxEnvelopeSize: Int = 153_600

    @Option(name: .customLong("log-level"), help: ArgumentHelp("Log level.", valueName: "info|debug"))
    var logLevel: String = "info"

    func validate() throws {
        guard GatewayAuthenticationMode(rawValue: auth) != nil else { throw ValidationError("--auth must be file or pam, not \(auth)") }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("--log-level must be info or debug, not \(logLevel)") }
        guard maxEnvelopeSize >= 8192 else { throw ValidationError("--max-envelope-size must be at least 8192") }
        for text in listen + listenHTTPS where ListenAddress(parsing: text) == nil {
            throw ValidationError("\(text) is not HOST:PORT")
        }
        if !listenHTTPS.isEmpty && (certificate == nil || privateKey == nil) {
            throw ValidationError("--listen-https needs --certificate and --private-key")
        }
    }

    func run() async throws {
        AirlockLog.bootstrap(label: "airlock-wsman", level: Logger.Level(rawValue: logLevel) ?? .info)
        let logger = Logger(label: "airlock-wsman")
        do {
            let mode = GatewayAuthenticationMode(rawValue: auth)!
            var http = listen.compactMap(ListenAddress.init(parsing:))
            let https = listenHTTPS.compactMap(ListenAddress.init(parsing:))
            if http.isEmpty && https.isEmpty { http = [ListenAddress(host: "127.0.0.1", port: 5985)] }
            var configuration = GatewayConfiguration(
                httpListeners: http, httpsListeners: https,
                authenticator: try mode.makeAuthenticator(passwordFile: passwordFile, pamService: pamService),
                maximumEnvelopeSize: maxEnvelopeSize)
            if let certificate, let privateKey {
                configuration.tls = .init(certificatePath: certificate, privateKeyPath: privateKey)
            }
            if let socket { configuration.socketPath = socket }
            try await GatewayService.run(configuration, logger: logger)
        } catch {
            logger.critical("cannot start: \(error)")
            throw ExitCode(1)
        }
    }
}

/// `hash-password`: a crypt(3) hash for a password file.
struct HashPassword: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hash-password",
        abstract: "Read one password line from standard input and print its crypt(3) hash (yescrypt) for a password file.")

    func run() throws {
        do {
            // No echo on a terminal; a trailing \r (a pasted line) is dropped.
            let line = try PasswordHash.readPasswordLine(prompt: "Password: ")
            print(try PasswordHash.make(password: line))
        } catch {
            FileHandleStandardError.write("airlock-wsman: \(error)\n")
            throw ExitCode(1)
        }
    }
}

/// Writes to standard error without Foundation.
enum FileHandleStandardError {
    static func write(_ text: String) {
        var text = text
        text.withUTF8 { bytes in _ = Glibc.write(STDERR_FILENO, bytes.baseAddress, bytes.count) }
    }
}
