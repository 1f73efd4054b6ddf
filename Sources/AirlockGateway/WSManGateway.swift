import AirlockClient
import AirlockGatewayAuth
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// An address to listen on, written `HOST:PORT` (`[::1]:5985` for IPv6).
public struct ListenAddress: Sendable, Hashable, CustomStringConvertible {
    /// The host name or address.
    public var host: String
    /// The port; 0 for an ephemeral one.
    public var port: Int

    /// Creates an address.
    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `HOST:PORT` or `[IPV6]:PORT`; nil when malformed.
    public init?(parsing text: String) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else {
            return nil
        }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { return nil }
        self.init(host: host, port: port)
    }

    /// `HOST:PORT`, with brackets around an IPv6 host.
    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// How `airlock-wsman` is set up: listeners, airlockd's socket, authentication, limits.
public struct GatewayConfiguration: Sendable {
    /// A certificate and key for the HTTPS listeners (PEM files).
    public struct TLSFiles: Sendable, Hashable {
        /// The certificate chain, PEM, leaf first.
        public var certificatePath: String
        /// The private key of the leaf certificate, PEM.
        public var privateKeyPath: String
        /// Names the two files.
        public init(certificatePath: String, privateKeyPath: String) {
            self.certificatePath = certificatePath
            self.privateKeyPath = privateKeyPath
        }
    }

    /// Plain HTTP listeners.
    public var httpListeners: [ListenAddress]
    /// HTTPS listeners (they need ``tls``).
    public var httpsListeners: [ListenAddress]
    /// The HTTPS certificate and key.
    public var tls: TLSFiles?
    /// airlockd's socket.
    public var socketPath: String
    /// Checks Basic credentials (blocking; run on a thread pool).
    public var authenticator: any BasicAuthenticator
    /// The largest SOAP envelope answered (the cap of a request's `w:MaxEnvelopeSize`).
    public var maximumEnvelopeSize: Int

    /// Creates a configuration.
    public init(
        httpListeners: [ListenAddress], httpsListeners: [ListenAddress] = [], tls: TLSFiles? = nil,
        socketPath: String = defaultSocketPath(), authenticator: any BasicAuthenticator, maximumEnvelopeSize: Int = 153_600
    ) {
        self.httpListeners = httpListeners
        self.httpsListeners = httpsListeners
        self.tls = tls
        self.socketPath = socketPath
        self.authenticator = authenticator
        self.maximumEnvelopeSize = maximumEnvelopeSize
    }
}

/// Why the gateway could not start (a listener that cannot bind, unreadable TLS files).
public struct GatewayStartError: Error, Sendable, CustomStringConvertible {
    /// What failed and why.
    public var description: String
    /// An error saying `description`.
    public init(_ description: String) { self.description = description }
}

/// The WS-Management gateway: HTTP(S) listeners whose `POST /wsman` requests, once their
/// Basic credentials check out, become AirlockClient operations on a connection that
/// asserts the user's identity to airlockd.
///
/// ```swift
/// let gateway = try await WSManGateway.start(configuration, logger: logger)
/// for url in gateway.urls { print("airlock-wsman listening on \(url)") }
/// ... // until SIGTERM
/// await gateway.shutdown()
/// ```
public final class WSManGateway: Sendable {
    /// One URL per listener, in the order configured: `http://127.0.0.1:5985/wsman`.
    public let urls: [String]

    private let group: MultiThreadedEventLoopGroup
    private let threadPool: NIOThreadPool
    private let channels: [any Channel]
    private let service: WSManService
    private let housekeeping: Task<Void, Never>
    private let logger: Logger

    private init(
        urls: [String], group: MultiThreadedEventLoopGroup, threadPool: NIOThreadPool, channels: [any Channel],
        service: WSManService, logger: Logger
    ) {
        self.urls = urls
        self.group = group
        self.threadPool = threadPool
        self.channels = channels
        self.service = service
        self.logger = logger
        housekeeping = Task { [service] in
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(30))
                await service.forgetEndedShells()
            }
        }
    }

    /// Binds every listener and starts serving.
    ///
    /// - Throws: ``GatewayStartError`` naming the listener or file that failed.
    public static func start(_ configuration: GatewayConfiguration, logger: Logger) async throws(GatewayStartError) -> WSManGateway {
        var sslContext: NIOSSLContext?
        if !configuration.httpsListeners.isEmpty {
            guard let tls = configuration.tls else {
                throw GatewayStartError("--listen-https needs --certificate and --private-key (PEM files)")
            }
            sslContext = try makeSSLContext(tls)
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, min(4, System.coreCount)))
        // Credential checks block: PAM's pam_unix sleeps about 2 s after a wrong password.
        // Enough threads that a burst of bad logins does not hold up everyone else's.
        let threadPool = NIOThreadPool(numberOfThreads: 16)
        threadPool.start()
        let pool = ConnectionPool(socketPath: configuration.socketPath, logger: logger)
        let service = WSManService(pool: pool, maximumEnvelopeSize: configuration.maximumEnvelopeSize, logger: logger)
        let responder = GatewayResponder(
            service: service, authenticator: configuration.authenticator, threadPool: threadPool, logger: logger)
        let maximumBodySize = max(configuration.maximumEnvelopeSize, 512 * 1024)

        var channels: [any Channel] = []
        var urls: [String] = []
        let listeners = configuration.httpListeners.map { ($0, false) } + configuration.httpsListeners.map { ($0, true) }
        do {
            for (address, secure) in listeners {
                let scheme = secure ? "https" : "http"
                let context = secure ? sslContext : nil
                let bootstrap = ServerBootstrap(group: group)
                    .serverChannelOption(.backlog, value: 256)
                    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                    // IPPROTO_TCP: at SOL_SOCKET the same number is SO_DEBUG, which needs
                    // CAP_NET_ADMIN; without it every accepted connection was closed.
                    .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
                    .childChannelOption(.maxMessagesPerRead, value: 16)
                    .childChannelInitializer { channel in
                        channel.eventLoop.makeCompletedFuture {
                            let local = channel.localAddress
                            let authority = local.map(Self.authority) ?? address.description
                            if let context {
                                try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context))
                            }
                            try channel.pipeline.syncOperations.addHandler(
                                ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes)))
                            try channel.pipeline.syncOperations.addHandler(HTTPConnectionHandler(
                                responder: responder, maximumBodySize: maximumBodySize, scheme: scheme, listenerAuthority: authority))
                        }
                    }
                let channel: any Channel
                do {
                    channel = try await bootstrap.bind(host: address.host, port: address.port).get()
                } catch {
                    throw GatewayStartError("cannot listen on \(address) (\(scheme)): \(error)")
                }
                channels.append(channel)
                let port = channel.localAddress?.port ?? address.port
                urls.append("\(scheme)://\(ListenAddress(host: address.host, port: port))/wsman")
            }
        } catch let error as GatewayStartError {
            for channel in channels { try? await channel.close() }
            try? await threadPool.shutdownGracefully()
            try? await group.shutdownGracefully()
            throw error
        } catch {
            throw GatewayStartError("\(error)")
        }
        logger.info("listening", metadata: ["urls": "\(urls.joined(separator: " "))", "socket": "\(configuration.socketPath)"])
        return WSManGateway(urls: urls, group: group, threadPool: threadPool, channels: channels, service: service, logger: logger)
    }

    /// Stops listening, closes client connections, closes the gateway's shells and its
    /// connections to airlockd.
    public func shutdown() async {
        housekeeping.cancel()
        for channel in channels { try? await channel.close() }
        await service.closeAllShells()
        await service.pool.closeAll()
        try? await group.shutdownGracefully()
        try? await threadPool.shutdownGracefully()
    }

    private static func makeSSLContext(_ tls: GatewayConfiguration.TLSFiles) throws(GatewayStartError) -> NIOSSLContext {
        let certificates: [NIOSSLCertificate]
        do {
            certificates = try NIOSSLCertificate.fromPEMFile(tls.certificatePath)
        } catch {
            throw GatewayStartError("cannot read the certificate \(tls.certificatePath) (PEM expected): \(error)")
        }
        guard !certificates.isEmpty else { throw GatewayStartError("the certificate file \(tls.certificatePath) holds no PEM certificate") }
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(file: tls.privateKeyPath, format: .pem)
        } catch {
            throw GatewayStartError("cannot read the private key \(tls.privateKeyPath) (PEM expected): \(error)")
        }
        let configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: certificates.map { .certificate($0) }, privateKey: .privateKey(key))
        do {
            return try NIOSSLContext(configuration: configuration)
        } catch {
            throw GatewayStartError("the certificate \(tls.certificatePath) and key \(tls.privateKeyPath) do not make a TLS context: \(error)")
        }
    }

    private static func authority(_ address: SocketAddress) -> String {
        guard let ip = address.ipAddress, let port = address.port else { return "\(address)" }
        return ListenAddress(host: ip, port: port).description
    }
}

/// Checks the Basic credentials on the thread pool, then hands the body to the service.
private struct GatewayResponder: WSManRequestResponder {
    let service: WSManService
    let authenticator: any BasicAuthenticator
    let threadPool: NIOThreadPool
    let logger: Logger

    func respond(authorization: String?, body: Data, httpURL: String) async -> HTTPAnswer? {
        guard let authorization, let (userName, password) = BasicAuthorization.parse(authorization) else { return nil }
        let authenticator = self.authenticator
        let user: AuthenticatedUser?
        do {
            user = try await threadPool.runIfActive { authenticator.authenticate(user: userName, password: password) }
        } catch {
            return HTTPAnswer(status: 503, body: [])
        }
        guard let user else {
            logger.notice("authentication failed", metadata: ["user": "\(userName)"])
            return nil
        }
        return await service.handle(
            body: body, user: GatewayUser(name: user.name, isSystemAccount: user.isSystemAccount, httpURL: httpURL))
    }
}
