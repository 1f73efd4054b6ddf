import AirlockGatewayAuth
import AirlockSystemd
import Dispatch
import Glibc
import Logging

/// How `airlock-wsman` checks Basic credentials.
public enum GatewayAuthenticationMode: String, Sendable, CaseIterable {
    /// Gateway-only users from a password file (`user:HASH` lines).
    case file
    /// System users through PAM.
    case pam

    /// The authenticator for this mode, wrapped in a ``CachingAuthenticator``.
    ///
    /// - Throws: ``GatewayStartError`` when `file` has no password file or the file is invalid.
    public func makeAuthenticator(passwordFile: String?, pamService: String) throws(GatewayStartError) -> any BasicAuthenticator {
        switch self {
        case .file:
            guard let passwordFile else { throw GatewayStartError("--auth file needs --password-file PATH") }
            do {
                return CachingAuthenticator(wrapping: try PasswordFileAuthenticator(path: passwordFile))
            } catch {
                throw GatewayStartError("\(error)")
            }
        case .pam:
            return CachingAuthenticator(wrapping: PAMAuthenticator(service: pamService))
        }
    }
}

/// The life of the `airlock-wsman` process: start the gateway, announce each listener on
/// standard output (`airlock-wsman listening on URL`), tell systemd READY=1, serve until
/// SIGTERM or SIGINT, then STOPPING=1 and a clean shutdown.
public enum GatewayService {
    /// Runs the gateway until SIGTERM/SIGINT.
    ///
    /// - Throws: ``GatewayStartError`` when it cannot start.
    public static func run(_ configuration: GatewayConfiguration, logger: Logger) async throws(GatewayStartError) {
        // Ignore the default actions (SIGTERM and SIGINT would end the process, SIGPIPE a
        // write to a closed socket); dispatch sources below turn SIGTERM and SIGINT into
        // an orderly shutdown.
        signal(SIGTERM, SIG_IGN)
        signal(SIGINT, SIG_IGN)
        signal(SIGPIPE, SIG_IGN)
        let (stops, continuation) = AsyncStream.makeStream(of: Int32.self)
        let queue = DispatchQueue(label: "airlock-wsman.signals")
        let sources = [SIGTERM, SIGINT].map { number in
            let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
            source.setEventHandler { continuation.yield(number) }
            source.resume()
            return source
        }

        let gateway = try await WSManGateway.start(configuration, logger: logger)
        for url in gateway.urls {
            print("airlock-wsman listening on \(url)")
        }
        fflush(nil)  // standard output, which may be a pipe: the lines must leave now
        let notifier = SystemdNotifier()
        if notifier.isEnabled {
            _ = try? notifier.ready(status: "listening on \(gateway.urls.joined(separator: " "))")
        }

        var iterator = stops.makeAsyncIterator()
        let number = await iterator.next() ?? SIGTERM
        logger.info("stopping", metadata: ["signal": "\(number == SIGINT ? "SIGINT" : "SIGTERM")"])
        if notifier.isEnabled { _ = try? notifier.stopping(status: "stopping") }
        await gateway.shutdown()
        for source in sources { source.cancel() }
        continuation.finish()
    }
}
